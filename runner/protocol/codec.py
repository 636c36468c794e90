"""Bytes <-> events: the one place where wire payloads are parsed or produced.

`decode_output` turns any payload the stream delivers into an OutputEvent or raises
RemoteProtocolError, never anything else (a property test feeds it arbitrary bytes and JSON).
It is tolerant where the service is known to vary (additionalModelFields as a JSON string or an
object, the interruption marker's spacing, double-encoded tool arguments, stop reasons and
generation stages outside the known lists, unknown event types) and strict where the runner
depends on a value (ids, content types, roles, base64 audio).

`encode_input` renders an input event through the agent's EventTemplates, which validate it
against the input-event schema before it can reach the wire.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from runner.errors import RemoteProtocolError
from runner.protocol.events import (
    AudioOutput,
    CompletionEnd,
    CompletionStart,
    ContentEnd,
    ContentStart,
    ContentType,
    InputEvent,
    OutputEvent,
    Role,
    TextOutput,
    TokenCounts,
    ToolUse,
    UnknownEvent,
    UsageEvent,
)
from runner.protocol.templates import EventTemplates


def encode_input(templates: EventTemplates, event: InputEvent) -> bytes:
    """The UTF-8 JSON payload for `event`, rendered and validated by its template."""
    return templates.render_bytes(event.TEMPLATE, event.context())


def decode_output(payload: bytes) -> OutputEvent:
    """Parse one output payload (`{"event": {"<name>": {...}}}`) into a typed event."""
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32.
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"output event is not UTF-8: {exc}") from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"output event is not JSON: {exc}") from None
    return decode_document(document)


def decode_document(document: Any) -> OutputEvent:
    """Like `decode_output`, for an already-parsed JSON value."""
    if not isinstance(document, dict) or "event" not in document:
        raise RemoteProtocolError(f"output event has no 'event' key: {_preview(document)}")
    wrapper = document["event"]
    if not isinstance(wrapper, dict) or len(wrapper) != 1:
        raise RemoteProtocolError(
            f"'event' must be an object with exactly one event name: {_preview(wrapper)}")
    ((name, body),) = wrapper.items()
    decoder = _DECODERS.get(name)
    if decoder is None:
        return UnknownEvent(name=name, raw=body if isinstance(body, dict) else {"value": body})
    if not isinstance(body, dict):
        raise RemoteProtocolError(f"{name}: body must be an object, got {_preview(body)}")
    return decoder(_Fields(name, body))


class _Fields:
    """Typed access to one event body; every failure names the event and the field."""

    def __init__(self, name: str, body: Mapping[str, Any]) -> None:
        self.name = name
        self.body = body

    def fail(self, message: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"{self.name}: {message}")

    def text(self, key: str) -> str:
        value = self.body.get(key)
        if not isinstance(value, str):
            raise self.fail(f"'{key}' must be a string, got {_preview(value)}")
        return value

    def opt_str(self, key: str) -> str | None:
        return None if self.body.get(key) is None else self.text(key)

    def content_type(self) -> ContentType:
        value = self.text("type")
        try:
            return ContentType(value)
        except ValueError:
            raise self.fail(f"unknown content type {value!r}") from None

    def role(self) -> Role:
        value = self.text("role")
        try:
            return Role(value)
        except ValueError:
            raise self.fail(f"unknown role {value!r}") from None


def _content_start(f: _Fields) -> ContentStart:
    return ContentStart(
        content_id=f.text("contentId"), type=f.content_type(), role=f.role(),
        generation_stage=_generation_stage(f), completion_id=f.opt_str("completionId"))


def _generation_stage(f: _Fields) -> str | None:
    extra = f.body.get("additionalModelFields")
    if extra is None:
        return None
    if isinstance(extra, str):
        # Documented as a JSON *string*: "{\"generationStage\":\"SPECULATIVE\"}".
        try:
            extra = json.loads(extra)
        except (ValueError, RecursionError):
            raise f.fail(f"additionalModelFields is not JSON: {_preview(extra)}") from None
    if not isinstance(extra, dict):
        raise f.fail(f"additionalModelFields must be a JSON object, got {_preview(extra)}")
    stage = extra.get("generationStage")
    if stage is not None and not isinstance(stage, str):
        raise f.fail(f"generationStage must be a string, got {_preview(stage)}")
    return stage


def _text_output(f: _Fields) -> TextOutput:
    return TextOutput(content_id=f.text("contentId"), role=f.role(), content=f.text("content"))


def _audio_output(f: _Fields) -> AudioOutput:
    try:
        # What base64.b64decode(validate=True) does, without its copy of the text to bytes first
        # (a2b_base64 takes an ASCII str): ~25 % of the decode of every audioOutput.
        pcm = binascii.a2b_base64(f.text("content"), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise f.fail(f"content is not valid base64: {exc}") from None
    if len(pcm) % 2:
        raise f.fail(f"audio is {len(pcm)} bytes, not whole 16-bit samples")
    return AudioOutput(content_id=f.text("contentId"), pcm=pcm)


def _tool_use(f: _Fields) -> ToolUse:
    return ToolUse(content_id=f.text("contentId"), tool_name=f.text("toolName"),
                   tool_use_id=f.text("toolUseId"), arguments=_tool_arguments(f))


def _tool_arguments(f: _Fields) -> dict[str, Any]:
    raw = f.text("content")
    if not raw.strip():
        return {}
    value: Any = raw
    # A JSON string of arguments, sometimes double-encoded (a JSON string holding the JSON text
    # of the object): peel at most two layers.
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise f.fail(f"tool arguments are not JSON: {_preview(raw)}") from None
    if not isinstance(value, dict):
        raise f.fail(f"tool arguments must be a JSON object, got {_preview(raw)}")
    return value


def _content_end(f: _Fields) -> ContentEnd:
    return ContentEnd(content_id=f.text("contentId"), type=f.content_type(),
                      stop_reason=f.opt_str("stopReason"))


def _completion_start(f: _Fields) -> CompletionStart:
    return CompletionStart(session_id=f.opt_str("sessionId"), prompt_name=f.opt_str("promptName"),
                           completion_id=f.opt_str("completionId"))


def _completion_end(f: _Fields) -> CompletionEnd:
    return CompletionEnd(session_id=f.opt_str("sessionId"), prompt_name=f.opt_str("promptName"),
                         completion_id=f.opt_str("completionId"), stop_reason=f.opt_str("stopReason"))


def _usage(f: _Fields) -> UsageEvent:
    details = f.body.get("details", {})
    if not isinstance(details, dict):
        raise f.fail(f"details must be an object, got {_preview(details)}")
    return UsageEvent(
        delta=_token_counts(f, details.get("delta", {}), "details.delta"),
        total=_token_counts(f, details.get("total", {}), "details.total"),
        total_input_tokens=_count(f, f.body, "totalInputTokens"),
        total_output_tokens=_count(f, f.body, "totalOutputTokens"),
        total_tokens=_count(f, f.body, "totalTokens"),
        completion_id=f.opt_str("completionId"))


def _token_counts(f: _Fields, node: Any, where: str) -> TokenCounts:
    if not isinstance(node, dict):
        raise f.fail(f"{where} must be an object, got {_preview(node)}")
    inp, out = node.get("input", {}), node.get("output", {})
    if not isinstance(inp, dict) or not isinstance(out, dict):
        raise f.fail(f"{where}.input/output must be objects")
    return TokenCounts(input_speech=_count(f, inp, "speechTokens"), input_text=_count(f, inp, "textTokens"),
                       output_speech=_count(f, out, "speechTokens"),
                       output_text=_count(f, out, "textTokens"))


def _count(f: _Fields, node: Mapping[str, Any], key: str) -> int:
    value = node.get(key, 0)
    # bool is an int subclass; a token count of `true` is malformed.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise f.fail(f"'{key}' must be a number, got {_preview(value)}")
    if value in (float("inf"), float("-inf")):
        raise f.fail(f"'{key}' must be finite")
    return int(value)


_DECODERS: dict[str, Callable[[_Fields], OutputEvent]] = {
    "completionStart": _completion_start,
    "contentStart": _content_start,
    "textOutput": _text_output,
    "audioOutput": _audio_output,
    "toolUse": _tool_use,
    "contentEnd": _content_end,
    "completionEnd": _completion_end,
    "usageEvent": _usage,
}


def _preview(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except Exception:  # preview only: a value too deep or odd to print must not mask the error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
