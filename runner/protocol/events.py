"""Typed Nova Sonic events: what the runner sends (input) and what the model sends (output).

Every event is a frozen, slotted dataclass, so an event is a value: it can be logged, compared in
tests and replayed. Field names follow Python conventions; `codec.py` maps them to and from the
wire's camelCase JSON. Input events know which EventTemplate renders them (`TEMPLATE`) and the
context that template takes (`context()`), so the wire JSON always comes from the (validated)
templates (nova-sonic-protocol.md §2, §3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from runner.protocol.setup import InferenceSettings, ToolSpec


class ContentType(StrEnum):
    TEXT = "TEXT"
    AUDIO = "AUDIO"
    TOOL = "TOOL"


class Role(StrEnum):
    USER = "USER"
    ASSISTANT = "ASSISTANT"
    TOOL = "TOOL"
    SYSTEM = "SYSTEM"
    SYSTEM_SPEECH = "SYSTEM_SPEECH"


class StopReason(StrEnum):
    """Stop reasons seen in the wild (§3). The enum is not documented, so fields typed `str`
    keep values outside this list as plain strings instead of rejecting them."""

    PARTIAL_TURN = "PARTIAL_TURN"
    END_TURN = "END_TURN"
    INTERRUPTED = "INTERRUPTED"
    TOOL_USE = "TOOL_USE"


class GenerationStage(StrEnum):
    """`additionalModelFields.generationStage`: SPECULATIVE text comes before its audio, FINAL
    text is what was actually spoken (or, for USER, the final transcript)."""

    SPECULATIVE = "SPECULATIVE"
    FINAL = "FINAL"


# ---------------------------------------------------------------------------------------------
# Input events (client -> Nova), in the order a session sends them.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStart:
    TEMPLATE: ClassVar[str] = "sessionStart"
    inference: InferenceSettings
    endpointing_sensitivity: str | None = None

    def context(self) -> dict[str, Any]:
        inf = self.inference
        return {
            "inference": {"max_tokens": inf.max_tokens, "top_p": inf.top_p,
                          "temperature": inf.temperature},
            "endpointing_sensitivity": self.endpointing_sensitivity,
        }


@dataclass(frozen=True, slots=True)
class PromptStart:
    TEMPLATE: ClassVar[str] = "promptStart"
    prompt_name: str
    output_sample_rate: int
    voice_id: str
    tools: tuple[ToolSpec, ...] = ()

    def context(self) -> dict[str, Any]:
        return {
            "prompt_name": self.prompt_name,
            "output_sample_rate": self.output_sample_rate,
            "voice_id": self.voice_id,
            # The template serialises input_schema to the JSON string Nova wants.
            "tools": [{"name": t.name, "description": t.description,
                       "input_schema": dict(t.input_schema)} for t in self.tools],
        }


@dataclass(frozen=True, slots=True)
class ContentStartText:
    TEMPLATE: ClassVar[str] = "contentStartText"
    prompt_name: str
    content_name: str
    role: Role
    interactive: bool

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name, "content_name": self.content_name,
                "role": self.role.value, "interactive": self.interactive}


@dataclass(frozen=True, slots=True)
class ContentStartAudio:
    TEMPLATE: ClassVar[str] = "contentStartAudio"
    prompt_name: str
    content_name: str
    input_sample_rate: int

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name, "content_name": self.content_name,
                "input_sample_rate": self.input_sample_rate}


@dataclass(frozen=True, slots=True)
class ContentStartTool:
    TEMPLATE: ClassVar[str] = "contentStartTool"
    prompt_name: str
    content_name: str
    tool_use_id: str

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name, "content_name": self.content_name,
                "tool_use_id": self.tool_use_id}


@dataclass(frozen=True, slots=True)
class TextInput:
    TEMPLATE: ClassVar[str] = "textInput"
    prompt_name: str
    content_name: str
    content: str

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name, "content_name": self.content_name,
                "content": self.content}


@dataclass(frozen=True, slots=True)
class AudioInput:
    TEMPLATE: ClassVar[str] = "audioInput"
    prompt_name: str
    content_name: str
    # base64 of 16-bit little-endian mono PCM (encoded once, when the event is built).
    content: str

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name, "content_name": self.content_name,
                "content": self.content}


@dataclass(frozen=True, slots=True)
class ToolResult:
    TEMPLATE: ClassVar[str] = "toolResult"
    prompt_name: str
    content_name: str
    # JSON text: Nova answers anything else with "Tool Response parsing error".
    content: str

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name, "content_name": self.content_name,
                "content": self.content}


@dataclass(frozen=True, slots=True)
class InputContentEnd:
    """`contentEnd` as sent by the runner (the output `ContentEnd` is the model's)."""

    TEMPLATE: ClassVar[str] = "contentEnd"
    prompt_name: str
    content_name: str

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name, "content_name": self.content_name}


@dataclass(frozen=True, slots=True)
class PromptEnd:
    TEMPLATE: ClassVar[str] = "promptEnd"
    prompt_name: str

    def context(self) -> dict[str, Any]:
        return {"prompt_name": self.prompt_name}


@dataclass(frozen=True, slots=True)
class SessionEnd:
    TEMPLATE: ClassVar[str] = "sessionEnd"

    def context(self) -> dict[str, Any]:
        return {}


InputEvent = (SessionStart | PromptStart | ContentStartText | ContentStartAudio | ContentStartTool
              | TextInput | AudioInput | ToolResult | InputContentEnd | PromptEnd | SessionEnd)


# ---------------------------------------------------------------------------------------------
# Output events (Nova -> client).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompletionStart:
    session_id: str | None
    prompt_name: str | None
    completion_id: str | None


@dataclass(frozen=True, slots=True)
class ContentStart:
    content_id: str
    type: ContentType
    role: Role
    # Parsed from additionalModelFields (TEXT blocks); None when absent.
    generation_stage: str | None = None
    completion_id: str | None = None


def _is_interruption_marker(content: str) -> bool:
    # Nova sends exactly '{ "interrupted" : true }'; compare as JSON so spacing variants match.
    if "interrupted" not in content:
        return False
    try:
        value = json.loads(content)
    except ValueError:
        return False
    return isinstance(value, dict) and value == {"interrupted": True}


@dataclass(frozen=True, slots=True)
class TextOutput:
    content_id: str
    role: Role
    content: str

    @property
    def is_interruption(self) -> bool:
        """True for the barge-in marker `{ "interrupted" : true }` (any whitespace)."""
        return _is_interruption_marker(self.content)


@dataclass(frozen=True, slots=True)
class AudioOutput:
    content_id: str
    # Decoded 16-bit little-endian mono PCM at the configured output rate.
    pcm: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ToolUse:
    content_id: str
    tool_name: str
    tool_use_id: str
    # Parsed from the `content` JSON string (one extra layer peeled when double-encoded).
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ContentEnd:
    content_id: str
    type: ContentType
    stop_reason: str | None


@dataclass(frozen=True, slots=True)
class CompletionEnd:
    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    stop_reason: str | None


@dataclass(frozen=True, slots=True)
class TokenCounts:
    input_speech: int = 0
    input_text: int = 0
    output_speech: int = 0
    output_text: int = 0


@dataclass(frozen=True, slots=True)
class UsageEvent:
    delta: TokenCounts
    # Cumulative for the session (the service's `details.total` and `total*Tokens`).
    total: TokenCounts
    total_input_tokens: int
    total_output_tokens: int
    total_tokens: int
    completion_id: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event type this runner does not know (a newer model); tolerated and logged."""

    name: str
    raw: Mapping[str, Any]


OutputEvent = (CompletionStart | ContentStart | TextOutput | AudioOutput | ToolUse | ContentEnd
               | CompletionEnd | UsageEvent | UnknownEvent)
