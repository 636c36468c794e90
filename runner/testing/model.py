"""A test file (`*.test.yaml`) as frozen, typed values, built by `runner.testing.load` once every
check passed. Expectations are objects from `runner.testing.expectations`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.emulator.replay import Tape
    from runner.emulator.scenario import Scenario
    from runner.testing.expectations import Expectation
    from runner.testing.services import ServiceSpec

DEFAULT_TURN_TIMEOUT_S = 20.0
TARGETS = ("emulator", "bedrock")


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a test file, shown as FILE:LINE (what a failure points at)."""

    file: str
    line: int
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class TextInput:
    """Typed text (Nova 2 cross-modal input)."""

    text: str


@dataclass(frozen=True, slots=True)
class SpeechInput:
    """Speech synthesized from `text` with espeak-ng."""

    text: str


@dataclass(frozen=True, slots=True)
class AudioInput:
    """A WAV file of speech."""

    path: Path


UserInput = TextInput | SpeechInput | AudioInput


@dataclass(frozen=True, slots=True)
class Turn:
    where: Where
    # None: no input, only wait for the assistant (its greeting).
    input: UserInput | None
    expectations: tuple[Expectation, ...] = ()
    wait_ms: int = 0
    # Start the input this long after the assistant's previous answer started (not after it ended).
    barge_in_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Mock:
    """A canned answer instead of a tool's handler: `result`, or an `error` message."""

    tool: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSide:
    """What the emulator plays: a scenario (from a file or written inline), a recording's model side
    (`replay`), or neither: its default answers."""

    scenario: Scenario | None = None
    scenario_path: Path | None = None
    replay: Tape | None = None


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    where: Where
    turns: tuple[Turn, ...]
    model: ModelSide = field(default_factory=ModelSide)
    mocks: Mapping[str, Mock] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TURN_TIMEOUT_S
    # Where the case runs ("emulator", "bedrock"); skipped elsewhere.
    targets: tuple[str, ...] = TARGETS


@dataclass(frozen=True, slots=True)
class TestFile:
    __test__ = False  # not a pytest test class, whatever its name

    path: Path
    agent_path: Path
    vars: Mapping[str, str]
    cases: tuple[Case, ...]
    description: str = ""
    # Local servers started before the cases (`services:`); `vars` may name their ports.
    services: tuple[ServiceSpec, ...] = ()
