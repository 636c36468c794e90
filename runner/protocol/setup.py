"""Everything a Session needs to open a Nova Sonic stream, as plain frozen values.

The config layer builds a SessionSetup from an agent file (`runner.config.setup`); the protocol
core never sees agent files, YAML or Python callables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["USER", "ASSISTANT"]


@dataclass(frozen=True, slots=True)
class InferenceSettings:
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it (the handler stays in the tools layer)."""

    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One replayed conversation message (issue 5: continuation)."""

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class SessionSetup:
    model_id: str
    voice_id: str
    system_prompt: str
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    # Only for Nova 2 models (None: omit turnDetectionConfiguration entirely).
    endpointing_sensitivity: str | None = None
    input_sample_rate: int = 16000
    output_sample_rate: int = 24000
    tools: tuple[ToolSpec, ...] = ()
    history: tuple[HistoryMessage, ...] = ()
    # Interactive USER text sent right after the audio block opens (Nova 2 "speak first").
    greeting: str | None = None
