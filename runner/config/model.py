"""An agent file as frozen, typed values: what the rest of the runner works with.

Built only by `runner.config.loader` after every check passed; nothing downstream sees YAML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.protocol.setup import InferenceSettings
from runner.protocol.templates import EventTemplates

VarValue = str | int | float | bool

DEFAULT_POLICY = "barge-in"
DEFAULT_TIMEOUT_S = 10.0
# A tool result larger than this (UTF-8 bytes of its JSON) is refused: the model gets an error.
DEFAULT_MAX_RESULT_BYTES = 64 * 1024
DEFAULT_ROTATE_AFTER_S = 360.0


@dataclass(frozen=True, slots=True)
class ModelConfig:
    id: str
    region: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class AudioConfig:
    input_sample_rate: int = 16000
    output_sample_rate: int = 24000
    chunk_ms: int = 32


@dataclass(frozen=True, slots=True)
class SessionConfig:
    rotate_after_s: float = DEFAULT_ROTATE_AFTER_S


@dataclass(frozen=True, slots=True)
class ToolConfig:
    name: str
    description: str
    input_schema: Mapping[str, Any]
    handler: str  # as written: "module:function" or "builtin:<name>"
    function: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES


@dataclass(frozen=True, slots=True)
class AgentConfig:
    path: Path
    name: str
    description: str
    model: ModelConfig
    inference: InferenceSettings
    endpointing_sensitivity: str | None
    voice: str
    audio: AudioConfig
    policy: str
    vars: Mapping[str, VarValue]  # defaults with --var overrides applied
    system_prompt: str  # rendered
    greeting: str | None
    tools: tuple[ToolConfig, ...]
    templates: EventTemplates
    session: SessionConfig
