"""Strict, stateful validation of a Nova Sonic input event sequence (sans-IO).

Theory of operation: `InputValidator.check(payload)` is called once per input event, in order. It
parses the JSON, validates the event against the input-event schema, then applies the ordering
rules of nova-sonic-protocol.md §2.5 against the state the earlier events built (prompt open,
content blocks open, history seen, tool uses issued). The first violation raises
`NovaValidationError` carrying the message the real service sends for that cause (§5.2); the
caller sends it as a `validationException` and ends the stream, as Bedrock does.

The service documents few of its messages, so every cause without a known message of its own gets
the generic "Invalid input request, please fix your input and try again." (pipecat#3122,
livekit/agents#6200).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.models import ALL_VOICES, model_info
from runner.protocol.templates import validate_event

INVALID_INPUT = "Invalid input request, please fix your input and try again."
CHAT_HISTORY_FIRST = "Chat history should be sent completely before streaming audio."
ASSISTANT_FIRST = "First message in chat history should not be Assistant."
TOOL_PARSE = "Tool Response parsing error"
INPUT_TIMEOUT = "Timed out waiting for input events"

# History limits: the strictest documented set (nova-sonic-protocol.md §2.5 rule 2; the Nova 2
# chat-history guide says 1 KB per textInput and 40 KB in total, an AWS maintainer said 40
# messages). The service has no documented message of its own for them; pipecat PR #3354 saw
# history problems answered with the generic "Invalid input request", so that is what we send.
MAX_HISTORY_MESSAGES = 40
MAX_TEXT_INPUT_BYTES = 1024
MAX_HISTORY_BYTES = 40 * 1024

INPUT_EVENTS = ("sessionStart", "promptStart", "contentStart", "textInput", "audioInput",
                "toolResult", "contentEnd", "promptEnd", "sessionEnd")

BlockType = Literal["TEXT", "AUDIO", "TOOL"]


def invalid_voice_message(voice: str) -> str:
    return f"Received invalid id: '{voice}'. Please check AWS documentation for valid voiceIds."


class NovaValidationError(Exception):
    """The input violates Nova Sonic's rules.

    `reason` is the service's own wording; `message` is what the emulator answers: the reason
    followed by ` (input event #N: NAME)`, the refused event's 1-based position on the stream and
    its name (`?` when the payload has none), so a client can tell which event was at fault.
    """

    def __init__(self, reason: str, *, index: int = 0, event: str = "?") -> None:
        self.reason = reason
        self.index = index
        self.event = event
        self.message = f"{reason} (input event #{index}: {event})" if index else reason
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One validated input event: its name and its body (the object under `event.<name>`)."""

    name: str
    body: dict[str, Any]
    # The content block the event belongs to (for contentEnd: the block it closed).
    block: Block | None = None
    # audioInput only: the decoded PCM.
    audio: bytes = b""


@dataclass(slots=True)
class Block:
    """An open input content block."""

    type: BlockType
    role: str
    interactive: bool
    tool_use_id: str | None = None
    text: list[str] = field(default_factory=list)
    got_result: bool = False
    # AUDIO: an audioInput of this block passed the full schema (later ones may take the fast path).
    schema_checked: bool = False

    @property
    def is_history(self) -> bool:
        return self.type == "TEXT" and not self.interactive and self.role in ("USER", "ASSISTANT")


@dataclass(frozen=True, slots=True)
class Prompt:
    """What promptStart configured (the behaviour needs it for its output events)."""

    name: str
    output_rate: int
    voice_id: str
    tool_names: tuple[str, ...]


class InputValidator:
    """Validates one stream's input events in order. Raises NovaValidationError on the first fault.

    After a violation the validator's state is undefined: the stream must end.
    """

    def __init__(self, model_id: str) -> None:
        info = model_info(model_id)
        self.voices: tuple[str, ...] = info.voices if info else ALL_VOICES
        # Unknown model ids are treated as Nova 2 capable (runner.models.is_nova2).
        self.nova2 = info.supports_interactive_text if info else True
        self.session_started = False
        self.session_ended = False
        self.prompt: Prompt | None = None
        self.prompt_ended = False
        self.blocks: dict[str, Block] = {}
        self.audio_started = False
        self.history_messages = 0
        self.history_bytes = 0
        self.issued_tool_uses: set[str] = set()
        self.answered_tool_uses: set[str] = set()
        self.events_checked = 0

    # -- the behaviour tells the validator what it emitted --------------------------------------

    def tool_use_issued(self, tool_use_id: str) -> None:
        """Record that this stream sent a toolUse with `tool_use_id` (its result becomes legal)."""
        self.issued_tool_uses.add(tool_use_id)

    # -- checking --------------------------------------------------------------------------------

    def check(self, payload: bytes | str) -> InputEvent:
        """Validate the next input event (raw JSON) and return it; raise NovaValidationError
        naming the event and its position on the stream."""
        self.events_checked += 1
        try:
            return self._check(payload)
        except NovaValidationError as exc:
            raise NovaValidationError(exc.reason, index=self.events_checked,
                                      event=_event_name(payload)) from None

    def _check(self, payload: bytes | str) -> InputEvent:
        fast = self._audio_fast(payload)
        if fast is not None:
            return fast
        event = _parse(payload)
        if self.session_ended or (not self.session_started and event.name != "sessionStart"):
            raise NovaValidationError(INVALID_INPUT)
        if event.name == "promptStart":
            self._check_voice(event.body)
        envelope = {"event": {event.name: event.body}}
        if validate_event(event.name, envelope):
            raise NovaValidationError(INVALID_INPUT)
        block = _RULES[event.name](self, event.body)
        audio = _decode_audio(event.body["content"]) if event.name == "audioInput" else b""
        if event.name == "audioInput" and block is not None:
            block.schema_checked = True
        return InputEvent(name=event.name, body=event.body, block=block, audio=audio)

    def _audio_fast(self, payload: bytes | str) -> InputEvent | None:
        """The audioInput event `payload`, when it is certainly valid; else None, and the full
        path (schema and rules) checks it and words the error exactly as it always did.

        ~31 audioInput events a second per stream make the schema pass the emulator's largest
        cost. Once the first audio event of a block has passed the full path, an audio event whose
        body has exactly the schema's three string fields, names this prompt and an open AUDIO
        block (names the schema already bounded when they were declared), with no text or tool
        block open, is valid by every rule. Nothing here changes the validator's state before
        the event is known valid, so a None costs only the second parse."""
        if not self.session_started or self.session_ended or self.prompt is None or self.prompt_ended:
            return None
        try:  # strict UTF-8, as _loads: json.loads(bytes) would also take UTF-16 and surrogates
            data = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
        except (ValueError, RecursionError):
            return None
        event = data.get("event") if type(data) is dict and len(data) == 1 else None
        body = event.get("audioInput") if type(event) is dict and len(event) == 1 else None
        if type(body) is not dict or len(body) != 3:
            return None
        prompt_name, content_name, content = (body.get("promptName"), body.get("contentName"),
                                              body.get("content"))
        if (type(content) is not str or type(prompt_name) is not str or type(content_name) is not str
                or prompt_name != self.prompt.name or not content.isascii()):
            return None
        block = self.blocks.get(content_name)
        if block is None or block.type != "AUDIO" or not block.schema_checked or self._text_or_tool_open():
            return None
        try:
            audio = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(audio) % 2:
            return None
        return InputEvent(name="audioInput", body=body, block=block, audio=audio)

    def _check_voice(self, body: dict[str, Any]) -> None:
        # Checked before the schema: the schema's lowercase pattern would otherwise turn
        # "Matthew" into the generic message, and the service names the bad id.
        audio = body.get("audioOutputConfiguration")
        voice = audio.get("voiceId") if isinstance(audio, dict) else None
        if isinstance(voice, str) and voice not in self.voices:
            raise NovaValidationError(invalid_voice_message(voice))

    def _require_prompt(self, body: dict[str, Any]) -> Prompt:
        if self.prompt is None or self.prompt_ended or body.get("promptName") != self.prompt.name:
            raise NovaValidationError(INVALID_INPUT)
        return self.prompt

    def _open_block(self, body: dict[str, Any]) -> Block:
        self._require_prompt(body)
        block = self.blocks.get(body["contentName"])
        if block is None:
            raise NovaValidationError(INVALID_INPUT)
        return block

    def _text_or_tool_open(self) -> bool:
        return any(b.type != "AUDIO" for b in self.blocks.values())

    # -- one rule per event ---------------------------------------------------------------------

    def _session_start(self, body: dict[str, Any]) -> Block | None:
        if self.session_started:
            raise NovaValidationError(INVALID_INPUT)
        if "turnDetectionConfiguration" in body and not self.nova2:
            raise NovaValidationError(INVALID_INPUT)
        self.session_started = True
        return None

    def _prompt_start(self, body: dict[str, Any]) -> Block | None:
        if not self.session_started or self.prompt is not None:
            raise NovaValidationError(INVALID_INPUT)
        tools = body.get("toolConfiguration", {}).get("tools", [])
        for tool in tools:
            try:
                _loads(tool["toolSpec"]["inputSchema"]["json"])
            except ValueError:
                raise NovaValidationError(INVALID_INPUT) from None
        audio = body["audioOutputConfiguration"]
        self.prompt = Prompt(name=body["promptName"], output_rate=audio["sampleRateHertz"],
                             voice_id=audio["voiceId"],
                             tool_names=tuple(t["toolSpec"]["name"] for t in tools))
        return None

    def _content_start(self, body: dict[str, Any]) -> Block | None:
        self._require_prompt(body)
        name = body["contentName"]
        kind: BlockType = body["type"]
        if name in self.blocks or (kind != "AUDIO" and self._text_or_tool_open()):
            raise NovaValidationError(INVALID_INPUT)
        block = Block(type=kind, role=body["role"], interactive=body["interactive"])
        if kind == "AUDIO":
            if self.audio_started and any(b.type == "AUDIO" for b in self.blocks.values()):
                raise NovaValidationError(INVALID_INPUT)
            self.audio_started = True
        elif kind == "TOOL":
            block.tool_use_id = body["toolResultInputConfiguration"]["toolUseId"]
            if block.tool_use_id not in self.issued_tool_uses - self.answered_tool_uses:
                raise NovaValidationError(INVALID_INPUT)
        elif not self.nova2 and (block.role == "SYSTEM_SPEECH" or
                                 (block.interactive and block.role == "USER")):
            # Cross-modal (interactive) text and speech prompts exist only on Nova 2 (§2.3, §2.6).
            raise NovaValidationError(INVALID_INPUT)
        elif block.is_history and self.history_messages == 0 and block.role == "ASSISTANT":
            raise NovaValidationError(ASSISTANT_FIRST)
        if block.is_history:
            self.history_messages += 1
            if self.history_messages > MAX_HISTORY_MESSAGES:
                raise NovaValidationError(INVALID_INPUT)
        self.blocks[name] = block
        return block

    def _text_input(self, body: dict[str, Any]) -> Block | None:
        block = self._open_block(body)
        if block.type != "TEXT":
            raise NovaValidationError(INVALID_INPUT)
        size = len(body["content"].encode())
        if block.is_history:
            self.history_bytes += size
            if size > MAX_TEXT_INPUT_BYTES or self.history_bytes > MAX_HISTORY_BYTES:
                raise NovaValidationError(INVALID_INPUT)
        block.text.append(body["content"])
        return block

    def _audio_input(self, body: dict[str, Any]) -> Block | None:
        self._require_prompt(body)
        if self._text_or_tool_open():
            raise NovaValidationError(CHAT_HISTORY_FIRST)
        block = self._open_block(body)
        if block.type != "AUDIO":
            raise NovaValidationError(INVALID_INPUT)
        return block

    def _tool_result(self, body: dict[str, Any]) -> Block | None:
        block = self._open_block(body)
        if block.type != "TOOL" or block.got_result:
            raise NovaValidationError(INVALID_INPUT)
        try:
            _loads(body["content"])
        except ValueError:
            raise NovaValidationError(TOOL_PARSE) from None
        block.got_result = True
        block.text.append(body["content"])
        return block

    def _content_end(self, body: dict[str, Any]) -> Block | None:
        block = self._open_block(body)
        del self.blocks[body["contentName"]]
        if block.type == "TOOL" and block.tool_use_id is not None:
            self.answered_tool_uses.add(block.tool_use_id)
        return block

    def _prompt_end(self, body: dict[str, Any]) -> Block | None:
        self._require_prompt(body)
        # Open blocks at promptEnd are tolerated: the real service's behaviour is undocumented
        # (§11) and a client shutting down after a fault should not get a second error.
        self.blocks.clear()
        self.prompt_ended = True
        return None

    def _session_end(self, body: dict[str, Any]) -> Block | None:
        if not self.session_started:
            raise NovaValidationError(INVALID_INPUT)
        self.session_ended = True
        return None


def _loads(payload: bytes | str) -> Any:
    """The payload's JSON value; ValueError for anything that is not UTF-8 JSON the decoder can
    hold: bad UTF-8, JSON errors, an integer over int()'s 4,300-digit limit (a plain ValueError),
    nesting deeper than the recursion limit (RecursionError), a lone surrogate (raw, which
    json.loads(bytes) lets through with "surrogatepass", or as a \\ud800 escape), which no later
    step could encode as UTF-8 again."""
    try:
        value = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return value


def _parse(payload: bytes | str) -> InputEvent:
    try:
        data = _loads(payload)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise NovaValidationError(INVALID_INPUT) from None
    event = data.get("event") if isinstance(data, dict) else None
    if not isinstance(event, dict) or len(data) != 1 or len(event) != 1:
        raise NovaValidationError(INVALID_INPUT)
    (name, body), = event.items()
    if name not in INPUT_EVENTS or not isinstance(body, dict):
        raise NovaValidationError(INVALID_INPUT)
    return InputEvent(name=name, body=body)


def _event_name(payload: bytes | str) -> str:
    """The event's name for an error message, from whatever can be read of the payload."""
    try:
        data = _loads(payload)
    except ValueError:
        return "?"
    event = data.get("event") if isinstance(data, dict) else None
    if isinstance(event, dict) and len(event) == 1:
        name = next(iter(event))
        if isinstance(name, str) and name.isidentifier() and len(name) <= 64:
            return name
    return "?"


def _decode_audio(content: str) -> bytes:
    try:
        pcm = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise NovaValidationError(INVALID_INPUT) from None
    if len(pcm) % 2:
        # 16-bit samples only (audioInputConfiguration.sampleSizeBits is always 16).
        raise NovaValidationError(INVALID_INPUT)
    return pcm


_RULES = {
    "sessionStart": InputValidator._session_start,
    "promptStart": InputValidator._prompt_start,
    "contentStart": InputValidator._content_start,
    "textInput": InputValidator._text_input,
    "audioInput": InputValidator._audio_input,
    "toolResult": InputValidator._tool_result,
    "contentEnd": InputValidator._content_end,
    "promptEnd": InputValidator._prompt_end,
    "sessionEnd": InputValidator._session_end,
}
