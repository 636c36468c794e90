"""The Nova Sonic session state machine (sans-IO, in the style of h11's `_state.py`).

Rule 1: everything that decides what may be sent, and in which order, lives in this file. The
  adapter (engine) only moves bytes: it calls `send_*()`/`start()`/`end()`, writes every payload of
  `data_to_send()` to the stream in order, and feeds each payload the stream delivers to
  `receive_data()`. No asyncio, no SDK, no clock, no file I/O here; ids come from `new_id`.

Rule 2: two tables, checked on every call, each with an unchanged state on refusal.
  - CALLS: which public call is legal in which SessionState (IDLE -> PRIMED -> STREAMING ->
    CLOSED). An illegal call raises LocalProtocolError naming the call, the state and the calls
    that were expected, and changes nothing.
  - WIRE: which input event may follow which on the wire (nova-sonic-protocol.md §2.5). Every
    event goes through `_commit`, which refuses (LocalProtocolError) any event the table does not
    allow. Reaching that error is a bug in this file: the public calls are built so that it
    cannot happen, and the tests check that.

Rule 3: TEXT and TOOL blocks are queued atomically: `contentStart`, its inputs and `contentEnd` are
  emitted in one call, so no other call can run while such a block is open. In the WIRE table an
  `audioInput` is legal only in W_AUDIO (the audio block is open and no TEXT/TOOL block is),
  which is the "never interleave audio with an open text block" rule (§2.5 rule 5, livekit #6720).

Rule 4: audio is never dropped silently. `send_audio()` before the audio block is open (IDLE,
  PRIMED: start-up, or a new stream during a hand-over) holds the frames back, in order, and
  sends them right after the audio `contentStart`. The hold-back buffer is bounded
  (`max_held_audio_bytes`); past the bound the OLDEST frames are dropped and counted in
  `statistics().audio_bytes_dropped`, because raising in the microphone pump would end the
  conversation and the newest speech matters most.

Rule 5: no event is larger than one event-stream message can carry (MAX_EVENT_BYTES). The SDK
  double-base64-encodes and frames every payload, and refuses a frame over the event-stream limit
  of 16 MiB from inside `send()`, which looked like a broken stream and was retried; here such an
  event is refused before it is queued (EventTooLargeError, nothing queued), so it can become an
  error result (a tool result) or a clear run error, never a reconnect loop.

Rule 6: a tool result goes only to the session that received its toolUse, once. Results for
  other ids raise LocalProtocolError (after a rotation the engine replays them as text, §2.5
  rule 6).

The receive side never raises for a well-formed but unexpected sequence (the model's ordering is
not ours to enforce); it tracks open output blocks, their generation stage, pending tool uses and
whether the assistant is mid-answer, and raises RemoteProtocolError only for undecodable payloads.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from runner.errors import LocalProtocolError
from runner.models import is_nova2, model_info
from runner.protocol.codec import decode_output, encode_input
from runner.protocol.events import (
    AudioInput,
    AudioOutput,
    CompletionEnd,
    CompletionStart,
    ContentEnd,
    ContentStart,
    ContentStartAudio,
    ContentStartText,
    ContentStartTool,
    ContentType,
    GenerationStage,
    InputContentEnd,
    InputEvent,
    OutputEvent,
    PromptEnd,
    PromptStart,
    Role,
    SessionEnd,
    SessionStart,
    StopReason,
    TextInput,
    TextOutput,
    ToolResult,
    ToolUse,
    UnknownEvent,
    UsageEvent,
)
from runner.protocol.history import prepare_history, split_utf8
from runner.protocol.setup import SessionSetup
from runner.protocol.templates import (
    FAST_PATH_MAX_CONTENT,
    MAX_EVENT_BYTES,
    AudioInputEncoder,
    EventTemplates,
)


class SessionState(Enum):
    IDLE = "IDLE"            # nothing sent yet
    PRIMED = "PRIMED"        # setup, system prompt and history queued; audio block not open yet
    STREAMING = "STREAMING"  # the audio block is open: audio, interactive text, tool results
    CLOSED = "CLOSED"        # end() was called; nothing more can be sent


# Public call -> next state, per state. Calls absent from a state's row are illegal there.
CALLS: dict[SessionState, dict[str, SessionState]] = {
    SessionState.IDLE: {
        "start": SessionState.PRIMED,  # then open_audio() -> STREAMING, unless open_audio=False
        "send_audio": SessionState.IDLE,  # held back
        "end": SessionState.CLOSED,
    },
    SessionState.PRIMED: {
        "open_audio": SessionState.STREAMING,
        "send_audio": SessionState.PRIMED,  # held back
        "end": SessionState.CLOSED,
    },
    SessionState.STREAMING: {
        "send_audio": SessionState.STREAMING,
        "send_text": SessionState.STREAMING,
        "send_tool_result": SessionState.STREAMING,
        "end": SessionState.CLOSED,
    },
    SessionState.CLOSED: {
        "end": SessionState.CLOSED,  # idempotent
    },
}


class Wire(Enum):
    """Where the input stream is, event by event."""

    W_NEW = "NEW"
    W_SESSION = "SESSION"            # sessionStart sent
    W_PROMPT = "PROMPT"              # promptStart sent, audio block not opened yet
    W_PROMPT_TEXT = "PROMPT_TEXT"    # a system/history TEXT block is open
    W_AUDIO = "AUDIO"                # the audio block is open, no other block open
    W_AUDIO_TEXT = "AUDIO_TEXT"      # an interactive TEXT block is open inside the audio block
    W_AUDIO_TOOL = "AUDIO_TOOL"      # a TOOL result block is open inside the audio block
    W_AUDIO_DONE = "AUDIO_DONE"      # the audio block is closed
    W_PROMPT_DONE = "PROMPT_DONE"    # promptEnd sent
    W_CLOSED = "CLOSED"              # sessionEnd sent


W = Wire
WIRE: dict[Wire, dict[type[InputEvent], Wire]] = {
    W.W_NEW: {SessionStart: W.W_SESSION},
    W.W_SESSION: {PromptStart: W.W_PROMPT, SessionEnd: W.W_CLOSED},
    W.W_PROMPT: {ContentStartText: W.W_PROMPT_TEXT, ContentStartAudio: W.W_AUDIO,
                 PromptEnd: W.W_PROMPT_DONE},
    W.W_PROMPT_TEXT: {TextInput: W.W_PROMPT_TEXT, InputContentEnd: W.W_PROMPT},
    W.W_AUDIO: {AudioInput: W.W_AUDIO, ContentStartText: W.W_AUDIO_TEXT,
                ContentStartTool: W.W_AUDIO_TOOL, InputContentEnd: W.W_AUDIO_DONE},
    W.W_AUDIO_TEXT: {TextInput: W.W_AUDIO_TEXT, InputContentEnd: W.W_AUDIO},
    W.W_AUDIO_TOOL: {ToolResult: W.W_AUDIO_TOOL, InputContentEnd: W.W_AUDIO},
    W.W_AUDIO_DONE: {PromptEnd: W.W_PROMPT_DONE},
    W.W_PROMPT_DONE: {SessionEnd: W.W_CLOSED},
    W.W_CLOSED: {},
}

class EventTooLargeError(LocalProtocolError):
    """An input event would be larger than one event-stream message can carry."""

    def __init__(self, event: str, size: int, template: str) -> None:
        self.event = event
        self.size = size
        self.template = template
        super().__init__(
            f"the {event} event would be {size} bytes, more than one event can carry "
            f"({MAX_EVENT_BYTES} bytes); it was not sent (rendered by {template})")


# The largest frame whose base64 stays within the fast path's bound.
FAST_PATH_MAX_PCM = FAST_PATH_MAX_CONTENT // 4 * 3

# 10 s of 16 kHz audio: far more than a stream hand-over takes.
DEFAULT_MAX_HELD_AUDIO_BYTES = 10 * 16000 * 2


@dataclass(frozen=True, slots=True)
class SessionStats:
    state: SessionState
    # Counted when queued (data_to_send hands them out in the same order).
    events_sent: Mapping[str, int]
    audio_bytes_sent: int
    audio_bytes_held: int
    audio_bytes_dropped: int
    events_received: Mapping[str, int]
    pending_tools: int


class Session:
    """One Nova Sonic stream, seen as events in and bytes out (see the module comment)."""

    def __init__(self, setup: SessionSetup, templates: EventTemplates, *, new_id: Callable[[], str],
                 max_held_audio_bytes: int = DEFAULT_MAX_HELD_AUDIO_BYTES) -> None:
        info = model_info(setup.model_id)
        if setup.endpointing_sensitivity is not None and info is not None \
                and not info.supports_endpointing:
            raise LocalProtocolError(
                f"endpointing sensitivity is a Nova 2 setting; {setup.model_id} rejects it")
        self.setup = setup
        self._templates = templates
        self._new_id = new_id
        self.prompt_name = new_id()
        self.audio_content_name: str | None = None
        # The audio block's audioInput fast path (templates.audio_input_encoder), or None.
        self._audio_encoder: AudioInputEncoder | None = None
        self._state = SessionState.IDLE
        self._wire = W.W_NEW
        self._outbox: list[bytes] = []
        self._held: deque[bytes] = deque()
        self._held_bytes = 0
        self._max_held = max_held_audio_bytes
        self._sent: Counter[str] = Counter()
        self._received: Counter[str] = Counter()
        self._audio_sent = 0
        self._audio_dropped = 0
        # Receive side.
        self._pending_tools: dict[str, ToolUse] = {}
        self._answered_tools: set[str] = set()
        self._open_blocks: dict[str, ContentStart] = {}
        self._answering = False

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    def _check(self, call: str) -> SessionState:
        """The state after `call`, or LocalProtocolError (state unchanged) when it is illegal."""
        row = CALLS[self._state]
        if call not in row:
            expected = ", ".join(f"{name}()" for name in row)
            raise LocalProtocolError(
                f"{call}() is not allowed in session state {self._state.name} (expected {expected})")
        return row[call]

    def _commit(self, events: list[InputEvent]) -> None:
        """Queue `events` atomically: all of them, or (on any refusal) none and nothing changed."""
        wire = self._wire
        payloads = []
        for event in events:
            nxt = WIRE[wire].get(type(event))
            if nxt is None:
                allowed = ", ".join(t.__name__ for t in WIRE[wire]) or "nothing"
                raise LocalProtocolError(
                    f"cannot send {type(event).__name__} when the input stream is at {wire.value} "
                    f"(allowed: {allowed})")
            payload = self._encode(event)
            if len(payload) > MAX_EVENT_BYTES:
                raise EventTooLargeError(event.TEMPLATE, len(payload),
                                         self._templates.source(event.TEMPLATE).filename)
            payloads.append(payload)
            wire = nxt
        self._wire = wire
        self._outbox.extend(payloads)
        for event in events:
            self._sent[event.TEMPLATE] += 1

    def _encode(self, event: InputEvent) -> bytes:
        if type(event) is AudioInput and self._audio_encoder is not None \
                and event.content_name == self.audio_content_name \
                and len(event.content) <= FAST_PATH_MAX_CONTENT:
            return self._audio_encoder.encode(event.content.encode("ascii"))
        return encode_input(self._templates, event)

    def _text_block(self, role: Role, text: str, *, interactive: bool) -> list[InputEvent]:
        name = self._new_id()
        return [ContentStartText(self.prompt_name, name, role, interactive),
                *(TextInput(self.prompt_name, name, piece) for piece in split_utf8(text)),
                InputContentEnd(self.prompt_name, name)]

    def _audio_input(self, pcm: bytes) -> AudioInput:
        assert self.audio_content_name is not None
        return AudioInput(self.prompt_name, self.audio_content_name, base64.b64encode(pcm).decode("ascii"))

    # --- sending -------------------------------------------------------------------------------

    def start(self, *, open_audio: bool = True) -> None:
        """Queue sessionStart, promptStart, the system prompt and the history, then `open_audio()`.

        With `open_audio=False` the session stays PRIMED (e.g. to open the audio block only once the
        stream is accepted, or while an old stream is still in use during a hand-over).
        """
        nxt = self._check("start")
        setup = self.setup
        events: list[InputEvent] = [
            SessionStart(setup.inference, setup.endpointing_sensitivity),
            PromptStart(self.prompt_name, setup.output_sample_rate, setup.voice_id, setup.tools),
            *self._text_block(Role.SYSTEM, setup.system_prompt, interactive=False),
        ]
        for message in prepare_history(setup.history):
            events += self._text_block(Role(message.role), message.text, interactive=False)
        self._commit(events)
        self._state = nxt
        if open_audio:
            self.open_audio()

    def open_audio(self) -> None:
        """Open the audio block, send the held-back audio, then the greeting (Nova 2 only)."""
        nxt = self._check("open_audio")
        name = self._new_id()
        self.audio_content_name = name
        self._audio_encoder = self._templates.audio_input_encoder(self.prompt_name, name)
        events: list[InputEvent] = [ContentStartAudio(self.prompt_name, name, self.setup.input_sample_rate)]
        events += [self._audio_input(pcm) for pcm in self._held]
        if self.setup.greeting and is_nova2(self.setup.model_id):
            events += self._text_block(Role.USER, self.setup.greeting, interactive=True)
        try:
            self._commit(events)
        except BaseException:
            self.audio_content_name = None
            self._audio_encoder = None
            raise
        self._audio_sent += self._held_bytes
        self._held.clear()
        self._held_bytes = 0
        self._state = nxt

    def send_audio(self, pcm: bytes) -> None:
        """One `audioInput` frame of 16-bit mono PCM, or held back until the audio block opens."""
        nxt = self._check("send_audio")
        if not pcm or len(pcm) % 2:
            raise LocalProtocolError(f"send_audio() needs whole 16-bit samples, got {len(pcm)} bytes")
        if self._state is SessionState.STREAMING:
            encoder = self._audio_encoder
            if encoder is not None and self._wire is W.W_AUDIO and len(pcm) <= FAST_PATH_MAX_PCM:
                # The fast path of every microphone frame: what _commit would queue, without
                # building the event (the WIRE row of W_AUDIO allows audioInput, staying there).
                payload = encoder.encode(base64.b64encode(pcm))
                if len(payload) > MAX_EVENT_BYTES:
                    raise EventTooLargeError(AudioInput.TEMPLATE, len(payload),
                                             self._templates.source(AudioInput.TEMPLATE).filename)
                self._outbox.append(payload)
                self._sent[AudioInput.TEMPLATE] += 1
            else:
                self._commit([self._audio_input(pcm)])
            self._audio_sent += len(pcm)
        else:
            self._hold(pcm)
        self._state = nxt

    def _hold(self, pcm: bytes) -> None:
        self._held.append(pcm)
        self._held_bytes += len(pcm)
        while self._held_bytes > self._max_held and len(self._held) > 1:
            dropped = self._held.popleft()
            self._held_bytes -= len(dropped)
            self._audio_dropped += len(dropped)

    def send_text(self, text: str) -> None:
        """An interactive USER text block (cross-modal input; Nova 2 only)."""
        nxt = self._check("send_text")
        if not is_nova2(self.setup.model_id):
            raise LocalProtocolError(
                f"send_text(): {self.setup.model_id} does not take interactive text (Nova 2 and "
                "later only); this model answers speech only")
        if not text.strip():
            raise LocalProtocolError("send_text() needs non-blank text")
        self._commit(self._text_block(Role.USER, text, interactive=True))
        self._state = nxt

    def check_tool_result(self, content: str) -> None:
        """Raise EventTooLargeError if a toolResult carrying `content` could not be sent (no
        state change), so the caller can send the model an error result instead."""
        event = ToolResult(self.prompt_name, "size-check", content)
        size = len(encode_input(self._templates, event))
        if size > MAX_EVENT_BYTES:
            raise EventTooLargeError(event.TEMPLATE, size, self._templates.source(event.TEMPLATE).filename)

    def send_tool_result(self, tool_use_id: str, content: str) -> None:
        """The result (JSON text) of a toolUse this session received and has not answered."""
        nxt = self._check("send_tool_result")
        if tool_use_id not in self._pending_tools:
            why = "already answered" if tool_use_id in self._answered_tools else "not issued by this stream"
            raise LocalProtocolError(
                f"send_tool_result(): tool use {tool_use_id!r} is {why}; a result is never sent to a "
                "stream that did not issue it, and only once")
        try:
            json.loads(content)
        except ValueError:
            raise LocalProtocolError(
                f"send_tool_result(): content must be JSON text (Nova rejects anything else), got "
                f"{content[:60]!r}") from None
        name = self._new_id()
        self._commit([ContentStartTool(self.prompt_name, name, tool_use_id),
                      ToolResult(self.prompt_name, name, content),
                      InputContentEnd(self.prompt_name, name)])
        del self._pending_tools[tool_use_id]
        self._answered_tools.add(tool_use_id)
        self._state = nxt

    def end(self) -> None:
        """Close in the documented order: audio contentEnd, promptEnd, sessionEnd. Idempotent.

        Held-back audio of a session whose audio block never opened is dropped and counted.
        """
        nxt = self._check("end")
        if self._state is SessionState.CLOSED:
            return
        events: list[InputEvent] = []
        if self._wire is W.W_AUDIO:
            assert self.audio_content_name is not None
            events.append(InputContentEnd(self.prompt_name, self.audio_content_name))
        if self._wire is not W.W_NEW:
            # Nothing was sent from IDLE, so there is nothing to close.
            events += [PromptEnd(self.prompt_name), SessionEnd()]
        self._commit(events)
        self._audio_dropped += self._held_bytes
        self._held.clear()
        self._held_bytes = 0
        self._state = nxt

    def data_to_send(self) -> list[bytes]:
        """Every queued payload (UTF-8 JSON), in order; write them all to the stream."""
        out, self._outbox = self._outbox, []
        return out

    # --- receiving -----------------------------------------------------------------------------

    def receive_data(self, payload: bytes) -> list[OutputEvent]:
        """Decode one payload from the stream and update the session's view of the model."""
        event = decode_output(payload)
        self._observe(event)
        return [event]

    def _observe(self, event: OutputEvent) -> None:
        self._received[_event_name(event)] += 1
        match event:
            case ContentStart():
                self._open_blocks[event.content_id] = event
                if event.role is Role.ASSISTANT and (
                        event.type is not ContentType.TEXT
                        or event.generation_stage == GenerationStage.SPECULATIVE):
                    self._answering = True
            case ContentEnd():
                self._open_blocks.pop(event.content_id, None)
                if event.stop_reason in (StopReason.END_TURN, StopReason.INTERRUPTED):
                    self._answering = False
            case TextOutput() if event.is_interruption:
                self._answering = False
            case ToolUse():
                if event.tool_use_id not in self._answered_tools:
                    self._pending_tools[event.tool_use_id] = event
            case CompletionEnd():
                self._answering = False
            case _:
                pass

    @property
    def pending_tool_uses(self) -> tuple[ToolUse, ...]:
        """Tool uses received and not yet answered (in arrival order)."""
        return tuple(self._pending_tools.values())

    @property
    def open_output_blocks(self) -> tuple[ContentStart, ...]:
        return tuple(self._open_blocks.values())

    def generation_stage(self, content_id: str) -> str | None:
        """The generation stage of an open output block (None if unknown or not given)."""
        block = self._open_blocks.get(content_id)
        return None if block is None else block.generation_stage

    @property
    def assistant_answering(self) -> bool:
        """True from the assistant's first SPECULATIVE text, audio or tool block of an answer until
        its END_TURN, its interruption, or completionEnd."""
        return self._answering

    @property
    def at_turn_boundary(self) -> bool:
        """Nothing in flight: a good moment to rotate to a new stream (issue 5)."""
        return not self._answering and not self._open_blocks and not self._pending_tools

    def statistics(self) -> SessionStats:
        return SessionStats(
            state=self._state, events_sent=dict(self._sent), audio_bytes_sent=self._audio_sent,
            audio_bytes_held=self._held_bytes, audio_bytes_dropped=self._audio_dropped,
            events_received=dict(self._received), pending_tools=len(self._pending_tools))


_EVENT_NAMES: dict[type, str] = {
    CompletionStart: "completionStart", ContentStart: "contentStart", TextOutput: "textOutput",
    AudioOutput: "audioOutput", ToolUse: "toolUse", ContentEnd: "contentEnd",
    CompletionEnd: "completionEnd", UsageEvent: "usageEvent",
}


def _event_name(event: OutputEvent) -> str:
    if isinstance(event, UnknownEvent):
        return event.name
    return _EVENT_NAMES[type(event)]
