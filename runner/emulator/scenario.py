"""Scenario files: the scripted model the emulator plays (schemas/scenario.schema.json).

A scenario is data: turns of `say` (Jinja text) and `tool` items, optional VAD/pacing settings
and optional faults. `parse_scenario` checks a loaded document against the schema (reporting every
problem with its location) and compiles every `say` template, so a broken scenario fails at start,
not in the middle of a session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jsonschema
import yaml

from runner.errors import ConfigError
from runner.protocol.templates import make_environment
from runner.schemas import SCENARIO, load_schema


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    input: Mapping[str, Any]

    @property
    def content(self) -> str:
        """The arguments as toolUse.content carries them: a JSON string."""
        return json.dumps(self.input, ensure_ascii=False)


Item = Say | ToolCall


@dataclass(frozen=True, slots=True)
class Turn:
    items: tuple[Item, ...]
    # What the model "heard"; None: the emulator describes the audio it got.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    speech_threshold_dbfs: float = -40.0
    speech_start_ms: int = 100
    speech_end_ms: int = 600
    # Nova streams audio faster than real time; 4x lets a barge-in still drop a tail.
    speed: float = 4.0
    audio_chunk_ms: int = 100


@dataclass(frozen=True, slots=True)
class Faults:
    reset_after_events: int | None = None
    throttle_connects: int = 0
    stream_error_at_turn: int | None = None
    invalid_bytes_at_turn: int | None = None
    time_limit_s: float | None = None
    # RST_STREAM right after the first toolUse: the tool's result then has no stream to go to.
    reset_after_tool_use: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    turns: tuple[Turn, ...] = ()
    settings: Settings = field(default_factory=Settings)
    faults: Faults = field(default_factory=Faults)
    source: str = "<scenario>"


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and compile a scenario YAML file. Raises ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read scenario: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_scenario(data, source=source)


def parse_scenario(data: Any, *, source: str = "<scenario>") -> Scenario:
    """Build a Scenario from a loaded document. Raises ConfigError listing every located problem."""
    problems = [f"{source}: {_where(err)}: {err.message}" for err in
                sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]
    if problems:
        raise ConfigError(f"invalid scenario {source}:\n  " + "\n  ".join(problems),
                          problems=tuple(problems))
    turns = tuple(_turn(t, f"{source}: $.turns[{i}]") for i, t in enumerate(data.get("turns", [])))
    return Scenario(turns=turns, settings=Settings(**data.get("settings", {})),
                    faults=Faults(**data.get("faults", {})), source=source)


def render_say(text: str, context: Mapping[str, Any]) -> str:
    """Render a `say` template (sandboxed, undefined names are errors)."""
    return _compile(text).render(context)


def render_say_leniently(text: str, context: Mapping[str, Any]) -> str:
    """Render a `say` template with unknown names and attributes left out (a degraded answer)."""
    try:
        return _compile_lenient(text).render(context)
    except Exception:  # the caller has already failed once: say what can be said
        return ""


def default_turn(user: str | None, *, speech_s: float | None) -> Turn:
    """What the emulator answers when no scenario turn is left: it reports what it heard."""
    if speech_s is not None:
        return Turn(items=(Say(f"I heard you speak for {speech_s:.1f} seconds."),), user=user)
    return Turn(items=(Say("You said: {{ user }}"),), user=user)


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema(SCENARIO)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


@cache
def _compile(text: str) -> jinja2.Template:
    return make_environment().from_string(text)


@cache
def _compile_lenient(text: str) -> jinja2.Template:
    env = make_environment()
    env.undefined = jinja2.ChainableUndefined
    return env.from_string(text)


def _turn(data: Mapping[str, Any], where: str) -> Turn:
    items: list[Item] = []
    for i, item in enumerate(data["assistant"]):
        if "say" in item:
            try:
                _compile(item["say"])
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(f"{where}.assistant[{i}].say: template error: {exc.message}") from None
            items.append(Say(item["say"]))
        else:
            items.append(ToolCall(item["tool"], item.get("input", {})))
    return Turn(items=tuple(items), user=data.get("user"))


def _where(err: jsonschema.ValidationError) -> str:
    path = "$"
    for part in err.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
