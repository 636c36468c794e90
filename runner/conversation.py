"""A conversation that outlives any one Nova Sonic stream.

Theory of operation
- Nova Sonic ends every stream after 8 minutes and streams also die from throttling, resets and
  stray bad bytes (nova-sonic-protocol.md §4.4, §5). The server keeps no state to reattach to, so
  the conversation keeps its own history (USER transcripts, ASSISTANT FINAL text) and replays it
  into each new stream (§9).
- A Link is one stream: its sans-IO Session, its transport Stream, one writer task (the only
  sender, so atomically queued text/tool blocks are never split by audio) and one reader task.
  Link tasks never raise into the conversation: a failure is recorded on the link and the
  supervisor decides what to do.
- The supervisor opens links. Proactively, once a stream is older than `rotate_after_s` and at a
  turn boundary (nothing answering, no tool pending), it hands over: the new Session is created
  first and the microphone switches to it at once (its audio is held back in order until the new
  audio block opens, so nothing the user says is dropped), then the old link is closed in the
  documented order. Reactively, after a retryable stream error it reconnects the same way with
  bounded exponential backoff; a non-retryable error (validation, access denied) ends the run
  with the service's message.
- The audio block of a new stream opens only once the service accepted the request (HTTP 200),
  so a throttled or refused attempt loses no audio: it stays held for the next attempt.
- A tool result goes to the stream that issued the call. If that stream is gone, the result is
  given to the current stream as interactive USER text (Nova 2) or kept for the next history
  replay (v1): never lost, never sent as a toolResult to a stream that did not issue it.
- mic:    policy gate -> source.read() (paced; silence while muted) -> current session. A muted
          file source holds its place instead of playing into the closed gate, so under the
          half-duplex policy a recorded question waits for the assistant (its greeting included:
          the gate stays closed from the greeting's sending until its answer has played).
- The greeting (Nova 2) is sent as interactive USER text; the service echoes it as a USER
  transcript, which is recorded and shown as the greeting, not as something the user said.
- player: Play actions pass through a bounded queue to the sink, so a full sink never stalls the
          reader: an interruption must be seen at once, not after seconds of queued audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.audio.base import AudioSink, AudioSource
from runner.config.model import ToolConfig
from runner.console import Console
from runner.errors import LocalProtocolError, ProtocolError, RunnerError, TransportError
from runner.models import is_nova2
from runner.policies.base import Action, CallTool, ConversationPolicy, FlushPlayback, MarkInterrupted, Play
from runner.protocol.events import (
    AudioOutput,
    ContentEnd,
    ContentStart,
    OutputEvent,
    TextOutput,
    ToolUse,
    UnknownEvent,
    UsageEvent,
)
from runner.protocol.handover import HandoverGate
from runner.protocol.history import HistoryRecorder
from runner.protocol.session import EventTooLargeError, Session, SessionState
from runner.protocol.setup import HistoryMessage
from runner.protocol.templates import MAX_EVENT_BYTES
from runner.tools.invoke import PREVIEW_CHARS, ToolOutcome, error_outcome, invoke_tool
from runner.transcript import Transcript
from runner.transports.base import Connector, Stream

log = logging.getLogger("runner.conversation")

PLAY_QUEUE_CHUNKS = 4096  # minutes of Nova's audioOutput chunks: bounded, never reached in practice
WRITER_DRAIN_S = 0.5
CLOSE_INPUT_S = 0.7
READER_FINISH_S = 0.5
ACCEPT_TIMEOUT_S = 10.0
# Reconnect backoff: first retry almost at once, then doubling, capped; give up after this many
# consecutive failed attempts (a link that served a turn resets the count).
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 8.0
MAX_CONSECUTIVE_FAILURES = 6
# Rotate this long before temporary credentials expire (livekit recycles 3 min before expiry).
CREDENTIALS_MARGIN_S = 180.0
# Audio the service has not yet confirmed hearing (no USER transcript since) is kept, up to this
# much, and replayed into the next stream after a failure (AWS's continuation sample keeps 3 s).
UNHEARD_AUDIO_S = 10.0
# -v sums up the microphone audio sent in one line per this much audio.
AUDIO_TRACE_EVERY_MS = 5000
# The longest the mic gate counts a greeting as still being answered when no answer comes.
GREETING_WAIT_S = 15.0


@dataclass
class StopRequest:
    """Why the conversation is stopping; `code` becomes the process exit code."""

    reason: str
    code: int = 0
    graceful: bool = True
    # The run failed (the reason is an error message for stderr), e.g. an output that broke.
    error: bool = False


class _Stopped(Exception):
    """Raised inside the TaskGroup to unwind every task once closing is done."""


@dataclass(frozen=True, slots=True)
class ConversationOptions:
    # End once the input has been played and nothing happened for this long (file input).
    idle_exit_s: float | None = None
    max_duration_s: float | None = None
    # Open a new stream at the first turn boundary after this many seconds (session.rotate_after_s).
    rotate_after_s: float = 360.0


@dataclass
class Link:
    """One Nova Sonic stream and the tasks that serve it."""

    index: int
    session: Session
    stream: Stream
    started_at: float
    reason: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    writer_idle: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failure: TransportError | None = None
    closing: bool = False
    served_turn: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def kick(self) -> None:
        self.writer_idle.clear()
        self.wake.set()

    def fail(self, failure: TransportError) -> None:
        if self.failure is None and not self.closing:
            self.failure = failure
        self.done.set()


SessionFactory = Callable[[tuple[HistoryMessage, ...], bool], Session]


class Conversation:
    """Runs a conversation over as many streams as it takes."""

    def __init__(self, *, connector: Connector, model_id: str, new_session: SessionFactory,
                 source: AudioSource, sink: AudioSink, policy: ConversationPolicy,
                 tools: Mapping[str, ToolConfig], transcript: Transcript, console: Console,
                 options: ConversationOptions, input_finished: Callable[[], bool] = lambda: False,
                 labels: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.connector = connector
        self.model_id = model_id
        self._new_session = new_session
        self.source = source
        self.sink = sink
        self.policy = policy
        self.tools = tools
        self.transcript = transcript
        self.console = console
        self.options = options
        self._input_finished = input_finished
        self._labels = dict(labels or {})  # e.g. agent and policy, repeated on each stream's start
        self._clock = clock
        self._wall_clock = wall_clock
        self._recorder = HistoryRecorder()
        self._messages: list[HistoryMessage] = []
        # Texts the runner itself sent as interactive USER text, mapped to whether their echo
        # belongs in the history (a re-sent user message is already there; a tool note is not).
        self._injected: dict[str, bool] = {}
        self._session: Session | None = None  # where the microphone's audio goes now
        self._link: Link | None = None
        self._links_opened = 0
        self._accepted_once = False  # some stream was accepted (HTTP 200): the endpoint is reachable
        self._stop_event = asyncio.Event()
        self._stop: StopRequest | None = None
        self._play_queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=PLAY_QUEUE_CHUNKS)
        self._tools_running = 0
        self._last_activity = clock()
        self._input_done_at: float | None = None
        self._run_started = clock()
        self._last_usage: UsageEvent | None = None
        self._usage_written: UsageEvent | None = None
        self.audio_bytes_sent = 0
        self._handover = HandoverGate()
        self._stale_expiry: datetime | None = None
        self._unheard: deque[bytes] = deque()
        self._unheard_bytes = 0
        self._unheard_limit = int(UNHEARD_AUDIO_S * 2 * source.fmt.sample_rate)
        # The greeting sent to the first stream: its echo is awaited, and until its answer ends
        # (or GREETING_WAIT_S pass) the assistant counts as speaking for the mic gate.
        self._greeting_echo: str | None = None
        self._greeting_until: float | None = None
        # Audio shown by -v as sums, not chunk by chunk: (chunks sent), [chunks, bytes] received.
        self._audio_in_traced = 0
        self._audio_out_traced = [0, 0]
        self.audio_bytes_dropped = 0

    # -- public ------------------------------------------------------------------------------

    def request_stop(self, reason: str, *, code: int = 0, graceful: bool = True,
                     error: bool = False) -> None:
        """Ask the conversation to end (first reason wins). Safe from signal handlers."""
        if self._stop is None:
            self._stop = StopRequest(reason, code, graceful, error)
        self._stop_event.set()

    @property
    def streams_opened(self) -> int:
        return self._links_opened

    async def run(self) -> StopRequest:
        """Run until a stop is requested; returns why it stopped.

        Raises TransportError when a stream fails in a way reconnecting cannot fix, and any other
        RunnerError a part of the run raised (an event template that cannot render).
        """
        failure: RunnerError | None = None
        self._run_started = self._clock()
        task = asyncio.current_task()
        cancelling_before = task.cancelling() if task is not None else 0
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._mic(), name="mic")
                tg.create_task(self._player(), name="player")
                tg.create_task(self._supervisor(), name="supervisor")
        except* _Stopped:
            pass
        except* TransportError as group:
            failure = _first(group)
        except* RunnerError as group:  # e.g. an event template that fails (or runs too long) at run time
            failure = _first_error(group)
        # CPython 3.12.0-3.12.2: a TaskGroup whose child failed leaves its parent task marked as
        # cancelling (gh-116720), which would break every later asyncio.timeout in this task.
        while task is not None and task.cancelling() > cancelling_before:
            task.uncancel()
        self._write_usage()
        if failure is not None:
            raise failure
        assert self._stop is not None
        return self._stop

    # -- supervisor: open, rotate, reconnect, stop --------------------------------------------

    async def _supervisor(self) -> None:
        reason = "start"
        failures = 0
        after_failure = False
        while True:
            link = await self._open_link(reason, failures, after_failure=after_failure)
            if link is None:  # stop requested while connecting
                raise _Stopped
            outcome = await self._watch(link)
            if outcome == "stop":
                assert self._stop is not None
                await self._close_link(link, self._stop.reason, graceful=self._stop.graceful)
                raise _Stopped
            if outcome in ("rotate", "rotate-credentials"):
                reason, failures, after_failure = "rotation", 0, False
                if outcome == "rotate-credentials":
                    reason = await self._refresh_credentials()
                self._tg.create_task(self._close_link(link, "rotated to a new stream"))
                continue
            assert isinstance(outcome, TransportError)
            failures = 0 if link.served_turn else failures + 1
            await self._close_link(link, str(outcome), error=outcome.kind)
            if not outcome.retryable:
                raise outcome
            endpoint = self.connector.info.endpoint
            if outcome.kind == "EndpointUnreachable" and not self._accepted_once:
                # Nothing was ever reached there: retrying only delays the error (issue 13).
                raise TransportError(f"cannot reach {endpoint}: {outcome}", kind=outcome.kind)
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise TransportError(f"gave up after {failures} failed attempts to reach {endpoint}; "
                                     f"last error: {outcome}", kind=outcome.kind)
            reason, after_failure = f"reconnect after {outcome.kind}", True
            self.console.warning(f"stream {link.index} failed ({outcome}); reconnecting")

    async def _open_link(self, reason: str, failures: int, *, after_failure: bool) -> Link | None:
        """Create the next session (the mic switches to it now), then connect with backoff."""
        history, replay = self._history_for_next_stream()
        session = self._new_session(history, self._links_opened == 0)
        if self._links_opened == 0 and session.setup.greeting and is_nova2(self.model_id):
            self._greeting_echo = session.setup.greeting
            self._greeting_until = self._clock() + GREETING_WAIT_S
        session.start(open_audio=False)
        if after_failure:
            # What the user said to the failed stream and was never transcribed is said again.
            for pcm in self._unheard:
                session.send_audio(pcm)
        self._session = session
        if failures:
            delay = min(BACKOFF_FIRST_S * 2 ** (failures - 1), BACKOFF_MAX_S)
            if await self._stop_within(delay):
                return None
        try:
            stream = await self.connector.open_stream(self.model_id)
        except TransportError as exc:
            link = Link(self._links_opened + 1, session, _DeadStream(), self._clock(), reason)
            self._links_opened += 1
            link.fail(exc)
            self._link = link
            return link
        self._links_opened += 1
        link = Link(self._links_opened, session, stream, self._clock(), reason)
        self._link = link
        link.tasks = [self._tg.create_task(self._writer(link), name=f"writer:{link.index}"),
                      self._tg.create_task(self._reader(link), name=f"reader:{link.index}")]
        link.kick()
        self.transcript.write("session", event="start", stream=link.index, reason=reason,
                              model=self.model_id, region=self.connector.info.region,
                              endpoint=self.connector.info.endpoint, history_messages=len(history),
                              **self._labels)
        if link.index > 1:
            self.console.info(f"  [stream {link.index} opened: {reason}; {len(history)} history messages]")
        self._tg.create_task(self._open_audio_when_accepted(link, replay), name=f"accept:{link.index}")
        return link

    def _history_for_next_stream(self) -> tuple[tuple[HistoryMessage, ...], str | None]:
        """The history to replay, and the trailing USER message to re-send as interactive text.

        A stream that died after the user spoke but before the answer leaves a trailing USER
        message; on Nova 2 it is sent as interactive text after the audio block opens so the
        model answers it (pipecat and livekit do the same), instead of as history.
        """
        messages = tuple(self._messages)
        if messages and messages[-1].role == "USER" and is_nova2(self.model_id):
            return messages[:-1], messages[-1].text
        return messages, None

    async def _open_audio_when_accepted(self, link: Link, replay: str | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACCEPT_TIMEOUT_S):
                await _first_of(link.accepted, link.done)
        if not link.accepted.is_set() or link.done.is_set() or link.closing:
            return
        link.session.open_audio()
        if replay is not None:
            self._injected[replay] = False
            link.session.send_text(replay)
        link.kick()

    async def _watch(self, link: Link) -> str | TransportError:
        """Wait until the link must stop, rotate, or has failed."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await _first_of(self._stop_event, link.done)
            if self._stop_event.is_set():
                return "stop"
            if link.done.is_set():
                return link.failure or TransportError(
                    "the service closed the stream unexpectedly", kind="StreamReset", retryable=True)
            now = self._clock()
            self._check_outputs()
            self._check_stop_conditions(now)
            rotation = self._rotation_due(link, now)
            if rotation is not None:
                return rotation

    def _rotation_due(self, link: Link, now: float) -> str | None:
        """"rotate", "rotate-credentials" or None."""
        aged = now - link.started_at >= self.options.rotate_after_s
        expiring = self._credentials_expiring()
        if not (aged or expiring) or not link.accepted.is_set() or self._tools_running:
            return None
        if link.session.state is not SessionState.STREAMING:
            return None
        if not self._handover.open(now, at_turn_boundary=link.session.at_turn_boundary):
            return None
        return "rotate-credentials" if expiring else "rotate"

    def _credentials_expiring(self) -> bool:
        expiry = self.connector.info.credentials_expiry
        if expiry is None or expiry == self._stale_expiry:
            return False
        return expiry.timestamp() - self._wall_clock() < CREDENTIALS_MARGIN_S

    async def _refresh_credentials(self) -> str:
        """Fresh credentials for the next stream; returns the rotation reason for the transcript."""
        old = self.connector.info.credentials_expiry
        await self.connector.refresh_credentials()
        new = self.connector.info.credentials_expiry
        if new is not None and new == old:
            # The credential source handed back the same keys: rotating again cannot help.
            self._stale_expiry = new
            self.console.warning(f"AWS credentials expire at {new:%H:%M:%S} and the credential source "
                                 "gives no newer ones; the stream will fail then")
        return f"rotation (credentials expire at {old:%H:%M:%S})" if old else "rotation"

    def _check_outputs(self) -> None:
        """A broken output (a full disk under the WAV or the transcript) ends the run with its error.

        Going on would lose what the user came to record; the session is still closed in order and
        the transcript, if it is the one still writable, gets its end record.
        """
        problem = self.sink.failure() or self.transcript.failure
        if problem is not None:
            self.request_stop(problem, code=1, graceful=False, error=True)

    def _check_stop_conditions(self, now: float) -> None:
        limit = self.options.max_duration_s
        if limit is not None and now - self._run_started >= limit:
            self.request_stop(f"reached --max-duration ({limit:g} s)")
        elif self._idle_done(now):
            self.request_stop("input finished and the conversation is idle")

    def _idle_done(self, now: float) -> bool:
        idle = self.options.idle_exit_s
        if idle is None or not self._input_finished():
            return False
        if self._input_done_at is None:
            self._input_done_at = now
        link = self._link
        busy = (self._tools_running > 0 or link is None or not link.session.at_turn_boundary
                or self.sink.pending_ms() > 0 or not self._play_queue.empty())
        quiet_since = max(self._last_activity, self._input_done_at)
        return not busy and now - quiet_since >= idle

    async def _stop_within(self, delay: float) -> bool:
        """Sleep `delay` s unless a stop is requested first; True when stopping."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop_event.wait()
        return self._stop_event.is_set()

    async def _close_link(self, link: Link, reason: str, *, graceful: bool = True,
                          error: str | None = None) -> None:
        """End the link's session in the documented order, bounded in time."""
        if link.closing:
            return
        link.closing = True
        if link.failure is None:
            with contextlib.suppress(LocalProtocolError):
                link.session.end()
            link.kick()
            await _within(link.writer_idle.wait(), WRITER_DRAIN_S)
            await link.stream.close_input(CLOSE_INPUT_S)
            await _within(link.done.wait(), READER_FINISH_S)
        for task in link.tasks:
            task.cancel()
        await _within(asyncio.gather(*link.tasks, return_exceptions=True), READER_FINISH_S)
        await link.stream.aclose()
        self._write_usage()  # the final usageEvent arrives after END_TURN: record it before the end
        stats = link.session.statistics()
        self.audio_bytes_sent += stats.audio_bytes_sent
        self.audio_bytes_dropped += stats.audio_bytes_dropped
        entry: dict[str, Any] = {"event": "end", "stream": link.index, "reason": reason}
        if error is not None:
            entry["error"] = error
        self.transcript.write("session", **entry)
        if link is self._link and self._stop is not None and graceful and self.sink.failure() is None:
            with contextlib.suppress(RunnerError):  # the output broke meanwhile: _player reports it
                await self.sink.wait_drained(30.0)

    # -- link tasks ----------------------------------------------------------------------------

    async def _writer(self, link: Link) -> None:
        try:
            while True:
                await link.wake.wait()
                link.wake.clear()
                for payload in link.session.data_to_send():
                    if self.console.verbose:
                        self._trace_sent(payload)
                    await link.stream.send(payload)
                if not link.wake.is_set():
                    link.writer_idle.set()
        except TransportError as exc:
            link.fail(exc)

    def _trace_sent(self, payload: bytes) -> None:
        name = _event_name(payload)
        if name != "audioInput":
            self.console.raw("->", name)
            return
        self.console.raw("->", f"audioInput {len(payload)} bytes", chunk=True)
        self._audio_in_traced += 1
        if self._audio_in_traced * self.source.chunk_ms >= AUDIO_TRACE_EVERY_MS:
            self.console.raw("->", f"audioInput x{self._audio_in_traced} "
                                   f"({self._audio_in_traced * self.source.chunk_ms / 1000:.1f} s)")
            self._audio_in_traced = 0

    async def _reader(self, link: Link) -> None:
        try:
            await self._accept(link)
            while True:
                payload = await link.stream.receive()
                if payload is None:
                    if not link.closing:
                        link.fail(TransportError("the service closed the stream unexpectedly",
                                                 kind="StreamReset", retryable=True))
                    return
                for event in link.session.receive_data(payload):
                    self._last_activity = self._clock()
                    await self._on_event(link, event)
        except TransportError as exc:
            link.fail(exc)
        except ProtocolError as exc:
            link.fail(TransportError(f"malformed event from the service: {exc}",
                                     kind="InvalidEventBytes", retryable=True))
        finally:
            link.done.set()

    async def _accept(self, link: Link) -> None:
        await link.stream.wait_accepted()
        self._accepted_once = True
        link.accepted.set()

    async def _mic(self) -> None:
        while True:  # ends when the TaskGroup is cancelled
            # Decided before reading: a muted file source keeps its place (nothing is lost), a
            # live one captures and drops, as a half-duplex line would.
            mic_open = self.policy.mic_open(self._assistant_speaking())
            self.source.mute(not mic_open)
            chunk = await self.source.read()
            if not mic_open:
                chunk = bytes(len(chunk))
            self._handover.heard(chunk, self._clock())
            session = self._session
            if session is None or self._stop_event.is_set():
                continue
            try:
                session.send_audio(chunk)
            except EventTooLargeError as exc:  # an audioInput template that inflates every frame
                self.request_stop(str(exc), code=1, graceful=False, error=True)
                continue
            except LocalProtocolError:
                continue  # the session is ending; its successor takes the next chunk
            self._remember_unheard(chunk)
            link = self._link
            if link is not None and link.session is session:
                link.kick()

    def _assistant_speaking(self) -> bool:
        """Assistant audio is queued or playing, or the greeting's answer is still to come."""
        if self._greeting_until is not None and self._clock() >= self._greeting_until:
            self._greeting_until = None
        return (self.sink.pending_ms() > 0 or not self._play_queue.empty()
                or self._greeting_until is not None)

    def _remember_unheard(self, chunk: bytes) -> None:
        self._unheard.append(chunk)
        self._unheard_bytes += len(chunk)
        while self._unheard_bytes > self._unheard_limit:
            self._unheard_bytes -= len(self._unheard.popleft())

    async def _player(self) -> None:
        while True:
            pcm = await self._play_queue.get()
            try:
                await self.sink.write(pcm)
            except RunnerError as exc:  # the output broke (a full disk, a stalled device)
                self.request_stop(str(exc), code=1, graceful=False, error=True)
                return

    # -- events ------------------------------------------------------------------------------

    async def _on_event(self, link: Link, event: OutputEvent) -> None:
        if isinstance(event, AudioOutput):
            self.console.raw("<-", _summary(event), chunk=True)
            self._audio_out_traced[0] += 1
            self._audio_out_traced[1] += len(event.pcm)
        else:
            if isinstance(event, ContentEnd) and event.type.value == "AUDIO" and self._audio_out_traced[0]:
                chunks, nbytes = self._audio_out_traced
                seconds = self.sink.fmt.duration_ms(nbytes) / 1000
                self.console.raw("<-", f"audioOutput x{chunks} ({seconds:.1f} s)")
                self._audio_out_traced = [0, 0]
            self.console.raw("<-", _summary(event))
        self._record(self._recorder.feed(event))
        if isinstance(event, ContentEnd) and event.stop_reason in ("END_TURN", "INTERRUPTED"):
            self._greeting_until = None  # the first answer (to the greeting, if any) is over
        match event:
            case UsageEvent():
                self._last_usage = event
            case ContentStart(role=role) if event.type.value == "AUDIO":
                self.console.status(f"{role.value.lower()} speaking")
            case ContentEnd(stop_reason="END_TURN"):
                link.served_turn = True
                self._handover.answered(self._clock())
                self._write_usage()
                self.console.status("listening")
            case UnknownEvent():
                log.info("ignoring unknown output event %s", event.name)
            case _:
                pass
        for action in self.policy.on_event(event):
            await self._apply(link, action)

    def _record(self, message: HistoryMessage | None) -> None:
        if message is None:
            return
        if message.role == "USER" and message.text in self._injected:
            # The service echoes text the runner sent: not something the user said.
            if self._injected.pop(message.text):
                self._messages.append(message)
            return
        if message.role == "USER" and message.text == self._greeting_echo:
            # The service's echo of the greeting instruction: kept in the history (the model's
            # greeting answers it), but it is not something the user said.
            self._greeting_echo = None
            self._messages.append(message)
            self.transcript.write("greeting", text=message.text)
            self.console.greeting(message.text)
            return
        self._messages.append(message)
        if message.role == "USER":
            self._unheard.clear()
            self._unheard_bytes = 0
        kind = "user" if message.role == "USER" else "assistant"
        self.transcript.write(kind, text=message.text)
        (self.console.user if kind == "user" else self.console.assistant)(message.text)

    async def _apply(self, link: Link, action: Action) -> None:
        match action:
            case Play(pcm=pcm):
                # Blocks only with minutes of audio queued: backpressure, not loss.
                await self._play_queue.put(pcm)
            case FlushPlayback():
                dropped = _drain(self._play_queue) + self.sink.flush()
                log.debug("barge-in: dropped %d bytes of assistant audio", dropped)
            case MarkInterrupted(content_id=content_id):
                self.transcript.write("interrupted", content_id=content_id)
                self.console.interrupted()
            case CallTool():
                self._tools_running += 1
                self._tg.create_task(self._call_tool(link, action), name=f"tool:{action.name}")

    async def _call_tool(self, link: Link, call: CallTool) -> None:
        try:
            self.transcript.write("tool_call", name=call.name, input=dict(call.arguments),
                                  tool_use_id=call.tool_use_id)
            self.console.tool_call(call.name, dict(call.arguments))
            outcome = self._fit_in_one_event(link, call, await self._invoke(call))
            entry: dict[str, Any] = {"name": call.name, "tool_use_id": call.tool_use_id,
                                     "duration_ms": round(outcome.duration_ms, 1)}
            if outcome.error is None:
                entry["result"] = _loads(outcome.result_json)
            else:
                entry["error"] = outcome.error
            if outcome.oversized_preview is not None:
                # What the handler returned, cut short and marked as such: never a whole megabyte.
                entry["result_truncated"] = outcome.oversized_preview
            self.transcript.write("tool_result", **entry)
            self.console.tool_result(call.name, outcome.error or outcome.result_json, outcome.duration_ms,
                                     outcome.error is None)
            self._deliver_tool_result(link, call, outcome.result_json)
        finally:
            self._tools_running -= 1
            self._last_activity = self._clock()

    def _fit_in_one_event(self, link: Link, call: CallTool, outcome: ToolOutcome) -> ToolOutcome:
        """A result whose toolResult event would be over the event size limit becomes an error
        result (an event template can inflate any result; max_result_bytes alone cannot)."""
        if not outcome.ok:
            return outcome
        try:
            link.session.check_tool_result(outcome.result_json)
        except EventTooLargeError as exc:
            error = (f"result too large for one event: its toolResult event would be {exc.size} bytes "
                     f"(at most {MAX_EVENT_BYTES})")
            return error_outcome(call.name, error, outcome.duration_ms, outcome.result_json[:PREVIEW_CHARS])
        return outcome

    async def _invoke(self, call: CallTool) -> ToolOutcome:
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "no tools"
            error = f"unknown tool {call.name!r}; this agent has: {known}"
            return ToolOutcome(False, json.dumps({"error": error, "tool": call.name}), error, 0.0)
        return await invoke_tool(tool.function, call.arguments, input_schema=tool.input_schema,
                                 timeout_s=tool.timeout_s, name=tool.name,
                                 max_result_bytes=tool.max_result_bytes)

    def _deliver_tool_result(self, link: Link, call: CallTool, result_json: str) -> None:
        if not link.closing and link.failure is None and self._link is link:
            try:
                link.session.send_tool_result(call.tool_use_id, result_json)
            except EventTooLargeError as exc:  # even the error result: an event template inflates it
                self.request_stop(str(exc), code=1, graceful=False, error=True)
            except LocalProtocolError as exc:
                log.warning("tool result for %s not sent: %s", call.name, exc)
            link.kick()
            return
        # The stream that asked is gone: a toolResult for it would be invalid on any other
        # stream (§2.5 rule 6), so the new stream hears it as the user's text instead.
        note = f"(Result of the {call.name} tool requested earlier: {result_json})"
        current = self._link
        if (current is not None and is_nova2(self.model_id) and not current.closing
                and current.session.state is SessionState.STREAMING):
            self._injected[note] = True
            current.session.send_text(note)
            current.kick()
        else:
            self._messages.append(HistoryMessage("USER", note))

    def _write_usage(self) -> None:
        usage = self._last_usage
        if usage is None or usage is self._usage_written:
            return
        self._usage_written = usage
        self.transcript.write("usage", input_tokens=usage.total_input_tokens,
                              output_tokens=usage.total_output_tokens, total_tokens=usage.total_tokens)


class _DeadStream:
    """Stands in for a stream that could not be opened, so closing is uniform."""

    async def send(self, payload: bytes) -> None:
        raise TransportError("stream not open", kind="ConnectionError", retryable=True)

    async def wait_accepted(self) -> None:
        raise TransportError("stream not open", kind="ConnectionError", retryable=True)

    async def receive(self) -> bytes | None:
        return None

    async def close_input(self, limit_s: float) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _within(awaitable: Any, limit_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            await awaitable


def _drain(queue: asyncio.Queue[bytes]) -> int:
    dropped = 0
    while not queue.empty():
        dropped += len(queue.get_nowait())
    return dropped


def _first(group: BaseExceptionGroup[TransportError]) -> TransportError:
    for exc in group.exceptions:
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
    raise group


def _first_error(group: BaseExceptionGroup[RunnerError]) -> RunnerError:
    first: RunnerError | BaseExceptionGroup[RunnerError] = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


_EVENT_NAME = re.compile(rb'"event"\s*:\s*\{\s*"(\w+)"')


def _event_name(payload: bytes) -> str:
    """The name of an input event from its JSON bytes (cheap: only the first bytes are looked at)."""
    match = _EVENT_NAME.search(payload[:120])
    return match.group(1).decode("ascii") if match else f"{len(payload)} bytes"


def _summary(event: OutputEvent) -> str:
    match event:
        case AudioOutput():
            return f"audioOutput {len(event.pcm)} bytes"
        case TextOutput():
            return f"textOutput {event.role.value}: {event.content[:80]!r}"
        case ToolUse():
            return f"toolUse {event.tool_name} {dict(event.arguments)}"
        case ContentStart():
            return f"contentStart {event.type.value} {event.role.value} {event.generation_stage or ''}"
        case ContentEnd():
            return f"contentEnd {event.type.value} {event.stop_reason or ''}"
        case _:
            return type(event).__name__
