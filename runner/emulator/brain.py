"""The emulated model for one stream, as a sans-IO state machine with an injected clock.

Theory of operation:
- The adapter feeds input events (`receive`), the end of input (`input_closed`) and the passing of
  time (`poll(now)`), and executes the `Action`s that `poll` returns, in order. `next_deadline()`
  says when `poll` must run again even if no input arrives. When `speech_request` is set, the
  adapter synthesises that text (blocking work, off the event loop) and hands the PCM back with
  `provide_speech`. Likewise, when `transcription_request` is set (settings.transcribe), the adapter
  transcribes that utterance's audio and hands the text back with `provide_transcript`; a spoken
  turn waits for its transcript before it plays.
- Every input event passes the strict `InputValidator` first; a violation ends the stream with the
  service's validationException message.
- USER audio goes through the energy VAD. Speech followed by silence (or an interactive USER text
  block) is a user turn; turns play one at a time (others queue). The scenario turn that answers
  it is `Conversation.choose(heard)`'s pick from the text the model heard (`scenario.choose_turn`):
  typed text is heard as typed; speech has no text here (so `when:` turns cannot match it). A
  turn is a generator: it emits events through `_emit` and yields `Pace`/`NeedSpeech`/`AwaitTool`
  when it has to wait, so a barge-in can drop the rest of an answer by closing the generator.
- Barge-in: the client starts playing at the first audio chunk and plays in real time, so it is
  still playing until `playback_end` (extended by each chunk's duration). Speech that starts
  before then interrupts: the open AUDIO block ends INTERRUPTED, then an ASSISTANT FINAL text block
  carries `{ "interrupted" : true }` and ends INTERRUPTED (nova-sonic-protocol.md §3.1).
- `Script` is shared by the streams of one emulator: it counts connects and fires each fault once.
  The scenario position belongs to a `Conversation`: a stream starts a new conversation (the
  scenario from the top) unless it replays history (a continuation: USER/ASSISTANT text blocks
  before its first turn) that matches what an earlier conversation said; then it resumes that
  conversation where it was. Several clients at once therefore each get their own conversation.
  A turn cut short by a fault is not consumed, so a reconnecting client gets it again.
- The scenario degrades like a model: a `tool` step for a tool the session did not declare is
  skipped (and logged); a `say` template that fails (a tool result of another shape than the
  scenario expected) is logged and the tool result's text is spoken instead.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import sys
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.emulator.outputs import INTERRUPTED_MARKER, OutputEvents, Tokens, speech_tokens, text_tokens
from runner.emulator.scenario import (
    Choice,
    Say,
    Scenario,
    ToolCall,
    choose_turn,
    render_arguments,
    render_say,
    render_say_leniently,
    speakable,
)
from runner.emulator.vad import EnergyVad, SpeechEnded, SpeechStarted, VadSettings
from runner.emulator.validation import INPUT_TIMEOUT, InputEvent, InputValidator, NovaValidationError

log = logging.getLogger("runner.emulator")

MODEL_TIMEOUT = "Model has timed out in processing the request. Try your request again."
STREAM_ERROR = "The system encountered an unexpected error during processing. Try your request again."
THROTTLED = "Too many requests, please wait before trying again."
# A prelude cut short: the SDK's decoder cannot read the prelude CRC and raises InvalidEventBytes.
INVALID_EVENT_BYTES = b"\x00\x00\x00\x40\x00\x00\x00\x10"


@dataclass(frozen=True, slots=True)
class SendEvent:
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SendException:
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class SendRaw:
    data: bytes


@dataclass(frozen=True, slots=True)
class ResetStream:
    pass


@dataclass(frozen=True, slots=True)
class EndStream:
    pass


Action = SendEvent | SendException | SendRaw | ResetStream | EndStream


@dataclass(frozen=True, slots=True)
class Pace:
    seconds: float


@dataclass(frozen=True, slots=True)
class NeedSpeech:
    text: str


@dataclass(frozen=True, slots=True)
class AwaitTool:
    tool_use_id: str


Wait = Pace | NeedSpeech | AwaitTool
Player = Generator[Wait, Any, None]


@dataclass(frozen=True, slots=True)
class ToolResultRecord:
    tool_use_id: str
    content: Any


@dataclass(slots=True)
class SessionRecord:
    """What one stream saw and did (grows while the stream runs; read it in tests)."""

    model_id: str
    request_id: str = ""
    input_events: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    # The USER audio itself, only when the emulator was asked to keep it.
    audio: bytearray = field(default_factory=bytearray)
    system_prompt: str = ""
    history: list[tuple[str, str]] = field(default_factory=list)
    user_turns: list[str] = field(default_factory=list)
    # Which scenario turn answered each user turn: "turns[N]", "fallback" or "default".
    chosen: list[str] = field(default_factory=list)
    tool_results: list[ToolResultRecord] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    interruptions: int = 0
    # The emulator's number of the conversation this stream played (None until its first turn),
    # and whether the stream resumed it from replayed history.
    conversation: int | None = None
    resumed: bool = False
    # None while running; then "closed", "validation", "time-limit", "input-timeout", "reset",
    # "stream-error", "invalid-bytes" or "gone".
    ended: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BrainSettings:
    time_limit_s: float = 480.0
    input_timeout_s: float = 60.0
    speed: float = 4.0
    audio_chunk_ms: int = 100
    vad: VadSettings = field(default_factory=VadSettings)
    record_audio: bool = False
    # Ask the adapter for a transcript of each utterance (`transcription_request`).
    transcribe: bool = False


class Conversation:
    """One conversation's place in the scenario and what it said (to recognise a continuation)."""

    def __init__(self, scenario: Scenario, number: int) -> None:
        self.scenario = scenario
        self.number = number
        self.next_turn = 0  # in-order turns (those without `when:`) used up
        self.played = 0  # turns played to the end (or interrupted), all kinds
        # The user transcripts and assistant texts of the turns played, in order.
        self.said: list[str] = []

    def choose(self, heard: str | None, speech_s: float | None) -> tuple[Choice, int]:
        """The turn that answers `heard` (the text the model heard; None: it has none) and its
        1-based number in the conversation (the turn is not used up until `consume`)."""
        return choose_turn(self.scenario, heard, self.next_turn, speech_s=speech_s), self.played + 1

    def consume(self, choice: Choice) -> None:
        self.played += 1
        if choice.ordered:
            self.next_turn += 1

    def remember(self, text: str) -> None:
        if text:
            self.said.append(_normalise(text))

    def overlap(self, history: Sequence[str]) -> int:
        """How many of the texts this conversation said appear, in order, in `history` (each as
        whole words of a message: clients merge consecutive messages of one role)."""
        found, at = 0, 0
        for text in self.said:
            index = next((i for i in range(at, len(history)) if f" {text} " in f" {history[i]} "), None)
            if index is not None:
                found, at = found + 1, index
        return found


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


class Script:
    """State shared by every stream of one emulator: the scenario, connects, fired faults and the
    conversations (kept to match continuations; the oldest are forgotten past MAX_CONVERSATIONS)."""

    MAX_CONVERSATIONS = 256

    def __init__(self, scenario: Scenario | None) -> None:
        self.scenario = scenario or Scenario()
        self.connects = 0
        self._fired: set[str] = set()
        self._conversations: OrderedDict[int, Conversation] = OrderedDict()
        self._numbers = 0

    def admit(self) -> bool:
        """Count a connection attempt; False while the throttle fault refuses it."""
        self.connects += 1
        return self.connects > self.scenario.faults.throttle_connects

    def fire(self, fault: str, due: bool) -> bool:
        """True exactly once per emulator for `fault`, the first time it is `due`."""
        if not due or fault in self._fired:
            return False
        self._fired.add(fault)
        return True

    def conversation_for(self, history: Sequence[tuple[str, str]]) -> tuple[Conversation, bool]:
        """The conversation a stream with this replayed `history` continues, or a new one.

        Returns (conversation, resumed). The best match is the conversation with the most of its
        own texts found in order in the history (ties: the most recently used); a history that
        matches no conversation (or no history) starts a new conversation from the top.
        """
        texts = [_normalise(text) for role, text in history if role in ("USER", "ASSISTANT")]
        best: Conversation | None = None
        best_score = 0
        for conversation in reversed(self._conversations.values()):
            score = conversation.overlap(texts) if texts else 0
            if score > best_score:
                best, best_score = conversation, score
        if best is not None:
            self._conversations.move_to_end(best.number)
            return best, True
        self._numbers += 1
        conversation = Conversation(self.scenario, self._numbers)
        self._conversations[conversation.number] = conversation
        while len(self._conversations) > self.MAX_CONVERSATIONS:
            self._conversations.popitem(last=False)
        return conversation, False


@dataclass(frozen=True, slots=True)
class UserTurn:
    transcript: str | None  # None: take the scenario's `user`
    speech_s: float | None  # None for interactive text
    pcm: bytes | None = None  # the utterance's audio, while its transcript is still to come


class Brain:
    """One stream's model behaviour. See the module docstring for the calling contract."""

    def __init__(self, *, model_id: str, script: Script, settings: BrainSettings,
                 now: float, new_id: Callable[[], str], request_id: str = "") -> None:
        self.script = script
        self._conversation: Conversation | None = None
        self.settings = settings
        self.new_id = new_id
        self.validator = InputValidator(model_id)
        self.record = SessionRecord(model_id=model_id, request_id=request_id)
        self.done = False
        self.speech_request: tuple[str, int] | None = None
        self._now = now
        self._deadline = now + min(settings.time_limit_s,
                                   script.scenario.faults.time_limit_s or settings.time_limit_s)
        self._last_input = now
        self._actions: list[Action] = []
        self._out: OutputEvents | None = None
        self._completion_started = False
        self._vad: EnergyVad | None = None
        self._heard = _Utterances(settings.transcribe)
        self._user_block: str | None = None  # a USER text block opened before its transcript
        self.speech_heard = False  # any speech yet (the adapter then readies its recognizer)
        self._queue: deque[UserTurn] = deque(maxlen=16)
        self._player: Player | None = None
        self._playing: Choice | None = None  # the turn `_player` plays
        self._resume_at: float | None = None
        self._awaiting_tool: str | None = None
        self._send_value: Any = None
        self._playback_end = 0.0
        self._open_audio: str | None = None

    # -- inputs ----------------------------------------------------------------------------------

    def receive(self, payload: bytes, now: float) -> InputEvent | None:
        """Handle one input event payload (raw JSON bytes); return it once validated (None when
        it was refused or the stream is over)."""
        if self.done:
            return None
        self._now = self._last_input = now
        try:
            event = self.validator.check(payload)
        except NovaValidationError as exc:
            self._fail("validation", SendException("validationException", exc.message))
            return None
        # Interned: one shared str per event kind, not a fresh ~60 B copy per event (an 8-minute
        # stream takes ~15 000 audioInput events; the record keeps each one's name).
        self.record.input_events.append(sys.intern(event.name))
        self._dispatch(event)
        limit = self.script.scenario.faults.reset_after_events
        if not self.done and self.script.fire(
                "reset", limit is not None and len(self.record.input_events) >= limit):
            self._finish("reset", ResetStream())
        self._advance()
        return event

    def input_closed(self, now: float) -> None:
        """The client closed its input (or the stream is gone)."""
        self._now = now
        if not self.done:
            self._finish("closed", EndStream())

    def provide_speech(self, pcm: bytes, now: float) -> None:
        """The PCM for `speech_request` (16-bit mono at the requested rate)."""
        self._now = now
        self.speech_request = None
        self._send_value = pcm
        self._advance()

    @property
    def transcription_request(self) -> tuple[bytes, int] | None:
        """(PCM, its sample rate) of the oldest utterance still waiting for its transcript."""
        pcm = next((turn.pcm for turn in self._queue if turn.pcm is not None), None)
        return None if pcm is None or self._vad is None else (pcm, self._vad.sample_rate)

    def provide_transcript(self, text: str | None, now: float) -> None:
        """What `transcription_request`'s audio said (None: nothing recognised, so the turn is
        played as without recognition)."""
        self._now = now
        for index, turn in enumerate(self._queue):
            if turn.pcm is not None:
                self._queue[index] = UserTurn((text or "").strip() or None, turn.speech_s)
                break
        self._advance()

    def poll(self, now: float) -> list[Action]:
        """Advance to `now`; return the actions to execute, in order."""
        self._now = max(self._now, now)
        if not self.done and self._now >= self._deadline:
            self._fail("time-limit", SendException("modelTimeoutException", MODEL_TIMEOUT))
        elif not self.done and self._now >= self._last_input + self.settings.input_timeout_s:
            self._fail("input-timeout", SendException("validationException", INPUT_TIMEOUT))
        self._advance()
        actions, self._actions = self._actions, []
        return actions

    @property
    def settled(self) -> bool:
        """Nothing for the adapter to do until more input or `next_deadline`: no actions waiting
        for `poll`, no speech or transcript asked for, not done."""
        return (not self._actions and self.speech_request is None and not self.done
                and (not self._queue or self.transcription_request is None))  # (asked per event)

    def next_deadline(self) -> float:
        """When `poll` must run next, even without input."""
        deadline = min(self._deadline, self._last_input + self.settings.input_timeout_s)
        if self._resume_at is not None and self.speech_request is None:
            deadline = min(deadline, self._resume_at)
        return deadline

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, event: InputEvent) -> None:
        body, block = event.body, event.block
        if event.name == "promptStart":
            self._out = OutputEvents(prompt_name=body["promptName"], new_id=self.new_id)
        elif event.name == "contentStart" and body["type"] == "AUDIO":
            rate = body["audioInputConfiguration"]["sampleRateHertz"]
            self._vad = EnergyVad(rate, self.settings.vad)
            self._heard.restart(rate)
        elif event.name == "audioInput":
            self._on_audio(event.audio)
        elif event.name == "contentEnd" and block is not None:
            self._on_block_closed(block.type, block.role, block.interactive, block.tool_use_id,
                                  "".join(block.text))
        elif event.name == "promptEnd":
            self._on_prompt_end()
        # sessionEnd ends nothing by itself: the stream ends when the client closes its input, and
        # anything it sends in between is a validation error.

    def _on_audio(self, pcm: bytes) -> None:
        self.record.audio_bytes += len(pcm)
        if self.settings.record_audio:
            self.record.audio.extend(pcm)
        assert self._vad is not None  # the validator only accepts audio inside an AUDIO block
        self._heard.add(pcm)
        for vad_event in self._vad.feed(pcm):
            if isinstance(vad_event, SpeechStarted):
                self.speech_heard = True
                if self._now < self._playback_end:
                    self._interrupt()
            elif isinstance(vad_event, SpeechEnded):
                said = self._heard.cut(vad_event.start_s, vad_event.end_s)
                if said is not None and self._player is None and not self._queue and self._out is not None:
                    self._open_user_block()
                self._user_turn(UserTurn(None, vad_event.duration_s, said))
        if not self._vad.in_speech:
            self._heard.forget_before(self._vad.position_s)

    def _on_block_closed(self, kind: str, role: str, interactive: bool, tool_use_id: str | None,
                         text: str) -> None:
        if kind == "TOOL" and tool_use_id is not None:
            result = _parse_result(text)
            self.record.tool_results.append(ToolResultRecord(tool_use_id, result))
            if self._awaiting_tool == tool_use_id:
                self._awaiting_tool = None
                self._send_value = (result, text)
        elif kind == "TEXT" and role == "SYSTEM":
            self.record.system_prompt = text
        elif kind == "TEXT" and role == "USER" and interactive:
            self._user_turn(UserTurn(text, None))
        elif kind == "TEXT" and role in ("USER", "ASSISTANT"):
            self.record.history.append((role, text))

    def _on_prompt_end(self) -> None:
        # Generation stops with the prompt: whatever was still to come of an answer is dropped.
        self._stop_player()
        self._queue.clear()
        out = self._require_out()
        if self._user_block is not None:
            self._emit(out.content_end(self._user_block, "TEXT", "PARTIAL_TURN"))
            self._user_block = None
        if not self._completion_started:
            self._emit(out.completion_start())
            self._completion_started = True
        self._emit(out.completion_end())

    # -- turns -----------------------------------------------------------------------------------

    def _user_turn(self, turn: UserTurn) -> None:
        self._queue.append(turn)

    def _advance(self) -> None:
        while not self.done:
            if self._player is None:
                if not self._queue or self._out is None or self._queue[0].pcm is not None:
                    return
                self._player = self._play(self._queue.popleft())
                self._send_value = None
            if self._blocked():
                return
            value, self._send_value = self._send_value, None
            self._resume_at = None
            try:
                wait = self._player.send(value)
            except StopIteration:
                self._player = None
                continue
            if isinstance(wait, Pace):
                self._resume_at = self._now + wait.seconds
            elif isinstance(wait, NeedSpeech):
                self.speech_request = (wait.text, self._require_out_rate())
            else:
                self._awaiting_tool = wait.tool_use_id

    def _blocked(self) -> bool:
        return (self.speech_request is not None or self._awaiting_tool is not None
                or (self._resume_at is not None and self._now < self._resume_at))

    @property
    def conversation(self) -> Conversation:
        """This stream's conversation, chosen at its first turn: clients send their history before
        the audio and any typed turn (nova-sonic-protocol.md §2.5), so it has all arrived by then."""
        if self._conversation is None:
            self._conversation, resumed = self.script.conversation_for(self.record.history)
            self.record.conversation, self.record.resumed = self._conversation.number, resumed
            if resumed:
                log.info("%s continues conversation #%d at turn %d (its replayed history matches)",
                         self._label, self._conversation.number, self._conversation.played + 1)
            else:
                log.info("%s starts conversation #%d: the scenario from the top", self._label,
                         self._conversation.number)
        return self._conversation

    @property
    def _label(self) -> str:
        return self.record.request_id[:8] or "stream"

    def _play(self, user: UserTurn) -> Player:
        out = self._require_out()
        conversation = self.conversation
        choice, number = conversation.choose(self._heard_text(user), user.speech_s)
        self._playing, turn = choice, choice.turn
        transcript = user.transcript or turn.user or f"({user.speech_s or 0.0:.1f} seconds of speech)"
        self.record.user_turns.append(transcript)
        self.record.chosen.append(choice.label)
        log.info("%s turn %d: %s answers%s", self._label, number, choice.label,
                 f" ({turn.when.describe()} matched)" if turn.when is not None and not choice.ordered else "")
        conversation.remember(transcript)
        if not self._completion_started:
            self._emit(out.completion_start())
            self._completion_started = True
        self._text_block("USER", "FINAL", transcript, "PARTIAL_TURN", opened=self._user_block)
        self._user_block = None
        self._emit(out.usage(Tokens(input_speech=speech_tokens(user.speech_s or 0.0),
                                    input_text=text_tokens(transcript))))
        if self._inject_fault(number):
            return
        context: dict[str, Any] = {"user": transcript, "match": dict(choice.match)}
        raw_result: str | None = None
        items = [item for item in turn.items
                 if not isinstance(item, ToolCall) or self._declared(item, number)]
        for index, item in enumerate(items):
            last = index == len(items) - 1
            if isinstance(item, Say):
                text = self._render(item, context, raw_result, number)
                conversation.remember(text)
                yield from self._say(text, last)
            else:
                tool_use_id = self.new_id()
                self.validator.tool_use_issued(tool_use_id)
                content_id = self.new_id()
                self._emit(out.tool_start(content_id))
                content = self._arguments(item, context, number)
                self._emit(out.tool_use(content_id, item.name, tool_use_id, content))
                self._emit(out.content_end(content_id, "TOOL", "TOOL_USE"))
                self._emit(out.usage(Tokens(output_text=text_tokens(content))))
                if self.script.fire("reset-after-tool-use", self.script.scenario.faults.reset_after_tool_use):
                    self._finish("reset", ResetStream())
                    return
                context["tool_result"], raw_result = yield AwaitTool(tool_use_id)
        conversation.consume(choice)

    def _heard_text(self, user: UserTurn) -> str | None:
        """The text the model heard: what was typed (or transcribed); None for speech it has no
        text of. Then `when:` turns cannot match, which is said once per emulator."""
        needs_text = self.script.scenario.matches_words
        if user.transcript is None and self.script.fire("when-needs-text", needs_text):
            log.warning("the scenario's `when:` turns match words, and this speech has no transcript "
                        "(without the `asr` extra the emulator does not recognise speech, and with it "
                        "it may recognise nothing): speech without words plays the turns without "
                        "`when:` in order; type instead (interactive text), or install the `asr` extra")
        return user.transcript

    def _arguments(self, call: ToolCall, context: Mapping[str, Any], number: int) -> str:
        """The call's arguments (JSON) with their templates rendered; when one fails (a capture
        or result it expects is missing), logged and rendered with the unknown parts left out."""
        try:
            return render_arguments(call, context)
        except Exception as exc:  # scenario templates are user input: degrade, never crash
            content = render_arguments(call, context, lenient=True)
            log.warning("%s turn %d: the input of tool %r failed to render (%s); sending %s instead",
                        self._label, number, call.name, exc, content)
            return content

    def _declared(self, call: ToolCall, number: int) -> bool:
        """Whether the session declared `call`'s tool; the service never calls any other."""
        prompt = self.validator.prompt
        declared = prompt.tool_names if prompt is not None else ()
        if call.name in declared:
            return True
        if self.script.scenario.faults.call_undeclared_tools:
            log.info("%s turn %d: calling undeclared tool %r (fault injection)", self._label, number,
                     call.name)
            return True
        log.info("%s turn %d: skipping the scenario's call of tool %r: the session declared %s",
                 self._label, number, call.name,
                 f"only {', '.join(map(repr, declared))}" if declared else "no tools")
        return False

    def _render(self, say: Say, context: Mapping[str, Any], raw_result: str | None, number: int) -> str:
        """The `say` text; when its template fails, what a model would say instead: the tool
        result as it came (a string result as the string), or the text with the unknown parts left out."""
        try:
            return render_say(say.text, context)
        except Exception as exc:  # scenario templates are user input: degrade, never crash
            result = context.get("tool_result")
            if raw_result is not None:
                fallback = result if isinstance(result, str) else raw_result
            else:
                fallback = render_say_leniently(say.text, context)
            log.warning("%s turn %d: scenario template %r failed (%s); saying %r instead",
                        self._label, number, say.text, exc, fallback)
            return fallback or "..."

    def _say(self, text: str, last: bool) -> Player:
        text = speakable(text)  # a template or tool result may hold a NUL or a lone surrogate
        out = self._require_out()
        self._text_block("ASSISTANT", "SPECULATIVE", text, "PARTIAL_TURN")
        pcm: bytes = yield NeedSpeech(text)
        rate = self._require_out_rate()
        content_id = self._open_audio = self.new_id()
        self._emit(out.audio_start(content_id, rate))
        chunk = max(2, rate * self.settings.audio_chunk_ms // 1000 * 2)
        for offset in range(0, len(pcm), chunk):
            if offset:
                yield Pace(chunk / 2 / rate / self.settings.speed)
            piece = pcm[offset:offset + chunk]
            self._emit(out.audio_output(content_id, base64.b64encode(piece).decode()))
            self._playback_end = max(self._playback_end, self._now) + len(piece) / 2 / rate
        self._emit(out.content_end(content_id, "AUDIO", "END_TURN" if last else "PARTIAL_TURN"))
        self._open_audio = None
        self._text_block("ASSISTANT", "FINAL", text, "END_TURN" if last else "PARTIAL_TURN")
        self._emit(out.usage(Tokens(output_speech=speech_tokens(len(pcm) / 2 / rate),
                                    output_text=text_tokens(text))))

    def _inject_fault(self, number: int) -> bool:
        faults = self.script.scenario.faults
        if self.script.fire("stream-error", faults.stream_error_at_turn == number):
            self._fail("stream-error", SendException("modelStreamErrorException", STREAM_ERROR))
            return True
        if self.script.fire("invalid-bytes", faults.invalid_bytes_at_turn == number):
            self._actions.append(SendRaw(INVALID_EVENT_BYTES))
            self._finish("invalid-bytes", EndStream())
            return True
        return False

    def _interrupt(self) -> None:
        out = self._require_out()
        if self._player is not None and self._conversation is not None and self._playing is not None:
            self._conversation.consume(self._playing)  # the answer was given, if only in part
        self._stop_player()
        if self._open_audio is not None:
            self._emit(out.content_end(self._open_audio, "AUDIO", "INTERRUPTED"))
            self._open_audio = None
        content_id = self.new_id()
        self._emit(out.text_start(content_id, "ASSISTANT", "FINAL"))
        self._emit(out.text_output(content_id, "ASSISTANT", INTERRUPTED_MARKER))
        self._emit(out.content_end(content_id, "TEXT", "INTERRUPTED"))
        # The client flushed its playback buffer.
        self._playback_end = self._now
        self.record.interruptions += 1

    def _stop_player(self) -> None:
        # A turn may end the stream itself (fault injection), and a running generator cannot be
        # closed: it returns right after, which `_advance` handles.
        if self._player is not None and inspect.getgeneratorstate(self._player) != inspect.GEN_RUNNING:
            self._player.close()
        self._player = None
        self._playing = None
        self._resume_at = None
        self._awaiting_tool = None
        self.speech_request = None
        self._send_value = None

    # -- helpers ---------------------------------------------------------------------------------

    def _open_user_block(self) -> None:
        """Start the USER text block while its words are being recognised, as Nova Sonic does: the
        client sees the model busy with its turn (no idle exit, no stream rotation meanwhile)."""
        out = self._require_out()
        if not self._completion_started:
            self._emit(out.completion_start())
            self._completion_started = True
        self._user_block = self.new_id()
        self._emit(out.text_start(self._user_block, "USER", "FINAL"))

    def _text_block(self, role: str, stage: str, text: str, stop_reason: str,
                    opened: str | None = None) -> None:
        out = self._require_out()
        content_id = opened or self.new_id()
        if opened is None:
            self._emit(out.text_start(content_id, role, stage))
        self._emit(out.text_output(content_id, role, text))
        self._emit(out.content_end(content_id, "TEXT", stop_reason))

    def _emit(self, event: Mapping[str, Any]) -> None:
        self.record.outputs.append(next(iter(event["event"])))
        self._actions.append(SendEvent(event))

    def _require_out(self) -> OutputEvents:
        assert self._out is not None  # turns start only after promptStart
        return self._out

    def _require_out_rate(self) -> int:
        prompt = self.validator.prompt
        assert prompt is not None
        return prompt.output_rate

    def _fail(self, reason: str, action: SendException) -> None:
        self.record.error = action.message
        self._finish(reason, action)

    def _finish(self, reason: str, action: Action) -> None:
        self._stop_player()
        self._actions.append(action)
        self.record.ended = reason
        self.done = True


class _Utterances:
    """The recent USER audio, to cut out each utterance the VAD finds (kept only when `keep`).

    Positions are audio time since the AUDIO block opened, as the VAD counts them. Outside speech
    only PRE_ROLL_S is kept; inside, at most the last MAX_S.
    """

    # The VAD starts speech at its first loud frame; the quieter onset before it helps recognition.
    PRE_ROLL_S = 0.3
    MAX_S = 30.0

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self._rate = 16000
        self._audio = bytearray()
        self._start = 0  # byte position (in the stream of USER audio) of self._audio[0]; even

    def restart(self, rate: int) -> None:
        self._rate, self._audio, self._start = rate, bytearray(), 0

    def add(self, pcm: bytes) -> None:
        if self.keep:
            self._audio.extend(pcm)
            self._drop(len(self._audio) - self._bytes(self.MAX_S + 2 * self.PRE_ROLL_S))

    def cut(self, start_s: float, end_s: float) -> bytes | None:
        if not self.keep:
            return None
        first = max(0, self._bytes(start_s - self.PRE_ROLL_S) - self._start)
        last = max(first, self._bytes(end_s + self.PRE_ROLL_S) - self._start)
        return bytes(self._audio[first:last])

    def forget_before(self, position_s: float) -> None:
        if self.keep:
            self._drop(self._bytes(position_s - self.PRE_ROLL_S) - self._start)

    def _drop(self, count: int) -> None:
        count = min(count - count % 2, len(self._audio) - len(self._audio) % 2)
        if count > 0:
            del self._audio[:count]
            self._start += count

    def _bytes(self, seconds: float) -> int:
        return 2 * round(seconds * self._rate)


def _parse_result(text: str) -> Any:
    """A tool result as scenario templates see it: the parsed JSON when it parses, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
