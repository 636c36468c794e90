"""NovaHandler: the emulator's model behaviour behind the wire layer (a `StreamHandler`).

A thin async adapter over the sans-IO `Brain`: the session loop reads input payloads from the
stream, feeds them to the brain with the current time, waits (bounded by the brain's next
deadline) for more, and executes the actions the brain returns on the stream. Speech synthesis (a
subprocess) and recognition (runner.emulator.asr) run in worker threads so that other streams keep
flowing. This stream's input waits meanwhile (in the stream's queue, then in the connection's flow
control): the brain is between turns then, with no playback to interrupt.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from runner.emulator import asr, speech
from runner.emulator.api import INLINE_TAKEN, TIMED_OUT, EmulatorStream, Rejection, StreamRequest
from runner.emulator.brain import (
    THROTTLED,
    Action,
    Brain,
    BrainSettings,
    EndStream,
    ResetStream,
    Script,
    SendEvent,
    SendException,
    SendRaw,
    SessionRecord,
)
from runner.emulator.eventlog import StreamLog
from runner.emulator.scenario import Scenario
from runner.emulator.vad import VadSettings

log = logging.getLogger("runner.emulator")

# NovaHandler.sessions keeps the records of this many most recent streams (tests read them; an
# 8-minute stream's record holds ~15 000 input event names, ~120 kB).
MAX_SESSIONS = 256


@dataclass(frozen=True, slots=True)
class NovaConfig:
    scenario: Scenario | None = None
    # Bedrock ends every stream after 8 minutes (nova-sonic-protocol.md §4.4); a scenario's
    # `faults.time_limit_s` can only shorten it.
    time_limit_s: float = 480.0
    # The service's silence timeout is undocumented; reports range from 60 s to 175 s (§4.2).
    input_timeout_s: float = 60.0
    # Overrides the scenario's `settings.speed` (how much faster than real time audio streams).
    speed: float | None = None
    # Keep every USER audio byte in SessionRecord.audio (tests of "no audio lost").
    record_audio: bool = False
    # Speech recognition by name (runner.emulator.asr.TRANSCRIBERS); None: the default there.
    asr: str | None = None


class NovaHandler:
    """Plays Nova Sonic from a scenario for every stream the wire layer accepts.

    `sessions` holds one SessionRecord per handled stream, in arrival order (the newest
    MAX_SESSIONS of them).
    """

    def __init__(self, config: NovaConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
                 synthesize: Callable[[str, int], bytes] = speech.synthesize,
                 transcriber: asr.Transcriber | None = None) -> None:
        self.config = config or NovaConfig()
        self.sessions: list[SessionRecord] = []
        self._script = Script(self.config.scenario)
        self._clock = clock
        self._new_id = new_id
        self._synthesize = synthesize
        self.transcriber = transcriber or asr.create(self.config.asr)
        self._warming = False
        s = self._script.scenario.settings
        self._settings = BrainSettings(
            time_limit_s=self.config.time_limit_s, input_timeout_s=self.config.input_timeout_s,
            speed=self.config.speed or s.speed, audio_chunk_ms=s.audio_chunk_ms,
            vad=VadSettings(threshold_dbfs=s.speech_threshold_dbfs, start_ms=s.speech_start_ms,
                            end_ms=s.speech_end_ms),
            record_audio=self.config.record_audio,
            transcribe=not isinstance(self.transcriber, asr.NoTranscriber))

    def admit(self, request: StreamRequest) -> Rejection | None:
        if self._script.admit():
            return None
        log.info("throttling request %s (fault injection)", request.request_id)
        return Rejection(status=429, error_type="ThrottlingException", message=THROTTLED)

    async def handle(self, stream: EmulatorStream) -> None:
        brain = Brain(model_id=stream.request.model_id, script=self._script,
                      settings=self._settings, now=self._clock(), new_id=self._new_id,
                      request_id=stream.request.request_id)
        self.sessions.append(brain.record)
        # A long-lived emulator (`agent-run emulate` behind a load test) serves any number of
        # streams: keep the newest records only, or each stream's record stays for good.
        del self.sessions[:-MAX_SESSIONS]
        events = StreamLog(log, stream.request.request_id[:8])
        try:
            await self._run(stream, brain, events)
        finally:
            events.close()
        if not stream.closed:
            await stream.end()
        log.info("stream %s ended: %s %s", stream.request.request_id, brain.record.ended,
                 brain.record.error or "")

    def _warm_up(self) -> None:
        """Load the speech model in a worker thread as soon as someone speaks: it is ready (about
        a second later) by the time the utterance ends, and a session without speech never pays
        for it. warm_up never raises; asyncio.run joins the thread at exit."""
        self._warming = True
        asyncio.get_running_loop().run_in_executor(None, self.transcriber.warm_up)

    async def _run(self, stream: EmulatorStream, brain: Brain, events: StreamLog) -> None:
        # A stream that can (the emulator's own) hands events over as they are read while this
        # loop waits for input; duck-typed, so any EmulatorStream still works through receive().
        set_inline = getattr(stream, "set_inline", None)
        inline = _Inline(self, brain, events) if set_inline is not None else None
        if set_inline is not None:
            set_inline(inline)
        try:
            await self._loop(stream, brain, events, inline)
        finally:
            if set_inline is not None:
                set_inline(None)

    async def _loop(self, stream: EmulatorStream, brain: Brain, events: StreamLog,
                    inline: _Inline | None) -> None:
        # The emulator's own stream waits with a timer instead of a cancellation (duck-typed too).
        receive_within = getattr(stream, "receive_within", None)
        while True:
            await _execute(stream, brain.poll(self._clock()), events)
            if brain.done:
                return
            if stream.closed:
                brain.input_closed(self._clock())
                continue
            if brain.speech_request is not None:
                text, rate = brain.speech_request
                pcm = await asyncio.to_thread(self._synthesize, text, rate)
                brain.provide_speech(pcm, self._clock())
                continue
            if brain.transcription_request is not None:
                audio, rate = brain.transcription_request
                heard = await asr.transcribe_async(self.transcriber, audio, rate)
                brain.provide_transcript(heard, self._clock())
                continue
            # The stream's own queue is the inbox: the wire layer stops acknowledging input (HTTP/2
            # flow control holds the client back) while it holds many unread events. Reading it
            # here, not through a reader task and a second queue, saves a task switch per event.
            # A receive cut short by the deadline loses nothing: it had not taken an event yet.
            # (A deadline already past still takes an event that is there: receive_within only
            # times out on an empty queue, asyncio.timeout cancels only at the next suspension.)
            deadline = brain.next_deadline()
            if inline is not None:
                inline.until = deadline
            delay = max(0.0, deadline - self._clock())
            if receive_within is not None:
                payload = await receive_within(delay)
                if payload is TIMED_OUT:
                    continue
            else:
                try:
                    async with asyncio.timeout(delay):
                        payload = await stream.receive()
                except TimeoutError:
                    continue
            if payload is INLINE_TAKEN:
                assert inline is not None
                inline.rethrow()
            elif payload is None:
                brain.input_closed(self._clock())
            else:
                self._take(brain, payload, events)

    def _take(self, brain: Brain, payload: bytes, events: StreamLog) -> None:
        event = brain.receive(payload, self._clock())
        if brain.speech_heard and not self._warming:
            self._warm_up()
        if event is not None:  # logged once validated: a refused event is named in the error
            events.input({"event": {event.name: event.body}})



class _Inline:
    """The consumer NovaHandler gives its stream (`set_inline`): it feeds an event to the brain
    right where the wire layer reads it, while the session loop waits for input. It asks for the
    loop (returns True) only when the brain has something to do or an earlier deadline than the
    one the loop waits for; an exception is raised again in the loop, as if it had read the event."""

    def __init__(self, handler: NovaHandler, brain: Brain, events: StreamLog) -> None:
        self._handler = handler
        self._brain = brain
        self._events = events
        self.until = 0.0  # the deadline the waiting loop wakes at anyway
        self._error: BaseException | None = None

    def __call__(self, payload: bytes) -> bool:
        if self._error is not None:
            return True
        try:
            self._handler._take(self._brain, payload, self._events)
        except Exception as exc:  # the loop raises it: the handler fails as it would have
            self._error = exc
            return True
        return not self._brain.settled or self._brain.next_deadline() < self.until

    def rethrow(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error


async def _execute(stream: EmulatorStream, actions: list[Action], events: StreamLog) -> None:
    for action in actions:
        if stream.closed:
            return
        if isinstance(action, SendEvent):
            await stream.send_event(action.event)
            events.output(action.event)
        elif isinstance(action, SendException):
            await stream.send_exception(action.kind, action.message)
        elif isinstance(action, SendRaw):
            await stream.send_raw(action.data)
        elif isinstance(action, ResetStream):
            await stream.reset()
        elif isinstance(action, EndStream):
            await stream.end()
