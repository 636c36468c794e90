"""The Conversation: its parts composed and run in one TaskGroup (see the package docstring)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from runner.audio.base import AudioSink, AudioSource
from runner.config.model import ToolConfig
from runner.console import Console
from runner.conversation.audio import Microphone, Player
from runner.conversation.control import CallControl, CallControlOptions, PhoneCall
from runner.conversation.events import OutputRouter
from runner.conversation.record import ConversationRecord
from runner.conversation.state import Live, Stopped, StopRequest
from runner.conversation.supervisor import SessionFactory, Supervisor
from runner.conversation.taps import EventTap, Taps
from runner.conversation.text import TextInput, TextPump
from runner.conversation.tools import ToolCalls
from runner.conversation.trace import ReceivedTrace, SentTrace
from runner.errors import RunnerError, TransportError
from runner.models import is_nova2
from runner.policies.base import ConversationPolicy
from runner.protocol.handover import HandoverGate
from runner.telemetry import start_export
from runner.telemetry.meter import MeteredConnector, TurnMeter
from runner.telemetry.prices import PriceTable, price_table
from runner.transcript import Transcript
from runner.transports.base import Connector

# A deadline that is due but held up by something with no event of its own (a turn still being
# answered, a tool running) is looked at again this often.
BUSY_POLL_S = 0.1
# While assistant audio plays, the stop checks run at least this often (a sink that breaks while
# playing says so only when asked), and when the audio queued so far should have played.
PLAYING_CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class ConversationOptions:
    # End once the input has been played and nothing happened for this long (file input).
    idle_exit_s: float | None = None
    max_duration_s: float | None = None
    # Open a new stream at the first turn boundary after this many seconds (session.rotate_after_s).
    rotate_after_s: float = 360.0


class Conversation:
    """Runs a conversation over as many streams as it takes."""

    def __init__(self, *, connector: Connector, model_id: str, new_session: SessionFactory,
                 source: AudioSource, sink: AudioSink, policy: ConversationPolicy,
                 tools: Mapping[str, ToolConfig], transcript: Transcript, console: Console,
                 options: ConversationOptions, input_finished: Callable[[], bool] = lambda: False,
                 labels: Mapping[str, str] | None = None,
                 text_input: TextInput | None = None, taps: Sequence[EventTap] = (),
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, prices: PriceTable | None = None,
                 call_control: CallControlOptions | None = None, phone: PhoneCall | None = None) -> None:
        self.model_id = model_id
        self.source = source
        self.sink = sink
        self.policy = policy
        self.transcript = transcript
        self.console = console
        self.options = options
        self._input_finished = input_finished
        self._input_done_at: float | None = None
        nova2 = is_nova2(model_id)
        self._live = live = Live(clock)
        self._run_started = clock()
        handover = HandoverGate()
        self._labels = dict(labels or {})
        # Per-turn latency, tokens and cost (runner.telemetry): prices from AGENT_RUN_PRICES or built in.
        self.meter = TurnMeter(
            model_id=model_id, prices=prices if prices is not None else price_table(), transcript=transcript,
            console=console, sink=sink, clock=clock, run_started=lambda: self._run_started, spawn=live.spawn,
            voice=lambda: live.session.setup.voice_id if live.session is not None else None,
            stopping=lambda: live.stopping,
            # The handover gate already measures every microphone chunk's level (in batches): its
            # last loud chunk is the user's end of speech as the runner can know it (measuring again
            # here would cost as much CPU as the gate does).
            last_loud=handover.last_speech)
        connector = MeteredConnector(connector, self.meter)
        self._record = ConversationRecord(transcript, console)
        self._player = Player(sink, live)
        # Call control (end_call, inactivity, max duration, transfer): runner.conversation.control.
        control_options = call_control or CallControlOptions()
        self._control = CallControl(replace(control_options, speaks_text=nova2), phone=phone, live=live,
                                    player=self._player, record=self._record, transcript=transcript,
                                    console=console, clock=clock)
        control_taps = (self._control,) if control_options.watches_user else ()
        self._taps = taps_ = Taps([*taps, *control_taps], clock, meter=self.meter)
        # The idle exit counts from the end of the input: the first chunk sent after it wakes the
        # supervisor (a file source goes on with silence), so nothing polls for it.
        self._watch_input_end = options.idle_exit_s is not None and text_input is None
        self._mic = Microphone(source, policy, self._player, handover, live, on_sent=self._audio_sent)
        self._tools = ToolCalls(tools, nova2=nova2, record=self._record, transcript=transcript,
                                console=console, live=live,
                                on_result=lambda call: taps_.sent("tool_result", name=call.name,
                                                                  tool_use_id=call.tool_use_id))
        self._router = OutputRouter(policy=policy, record=self._record, player=self._player, mic=self._mic,
                                    tools=self._tools, handover=handover, transcript=transcript,
                                    console=console, live=live, trace=ReceivedTrace(console, sink.fmt),
                                    taps=taps_)
        # Typed input (text mode): its lines go to the model as interactive USER text.
        self._text = None if text_input is None else TextPump(
            text_input, policy=policy, mic=self._mic, record=self._record, router=self._router, live=live,
            taps=taps_)
        self._supervisor = Supervisor(
            connector=connector, model_id=model_id, nova2=nova2, new_session=new_session,
            rotate_after_s=options.rotate_after_s, labels=labels or {}, record=self._record, mic=self._mic,
            player=self._player, router=self._router, handover=handover, transcript=transcript,
            console=console, live=live, tick=self._tick,
            sent_trace=SentTrace(console, source.chunk_ms) if console.verbose else None,
            wall_clock=wall_clock, next_due=self._next_due)
        # A transcript that cannot be written ends the run (see _check_outputs) at once.
        transcript.listen(lambda entry: live.poke() if transcript.failure is not None else None)

    # -- public ------------------------------------------------------------------------------

    def request_stop(self, reason: str, *, code: int = 0, graceful: bool = True,
                     error: bool = False) -> None:
        """Ask the conversation to end (first reason wins). Safe from signal handlers."""
        self._live.request_stop(reason, code=code, graceful=graceful, error=error)

    @property
    def stopping(self) -> bool:
        """A stop was requested: the next stream end the transcript records is its last."""
        return self._live.stopping

    @property
    def streams_opened(self) -> int:
        return self._supervisor.links_opened

    @property
    def audio_bytes_sent(self) -> int:
        """Microphone audio the closed streams sent (held-back audio not included)."""
        return self._supervisor.audio_bytes_sent

    @property
    def audio_bytes_dropped(self) -> int:
        """Microphone audio dropped because a stream held back more than it may."""
        return self._supervisor.audio_bytes_dropped

    async def run(self) -> StopRequest:
        """Run until a stop is requested; returns why it stopped.

        Raises TransportError when a stream fails in a way reconnecting cannot fix, and any other
        RunnerError a part of the run raised (an event template that cannot render).
        """
        failure: RunnerError | None = None
        self._run_started = self._live.clock()
        if self.meter.export is None:
            self.meter.export = start_export(model_id=self.model_id, labels=self._labels,
                                             clock=self._live.clock)
        self._control.started(self._run_started)
        context = self._control.context()  # its tasks' (and so its tools') call control
        task = asyncio.current_task()
        cancelling_before = task.cancelling() if task is not None else 0
        try:
            async with asyncio.TaskGroup() as tg:
                self._live.bind(tg)
                tg.create_task(self._mic.run(), name="mic", context=context)
                tg.create_task(self._player.run(), name="player", context=context)
                tg.create_task(self._supervisor.run(), name="supervisor", context=context)
                if self._text is not None:
                    tg.create_task(self._text.run(), name="text", context=context)
        except* Stopped:
            pass
        except* TransportError as group:
            failure = _first(group)
        except* RunnerError as group:  # e.g. an event template that fails (or runs too long) at run time
            failure = _first_error(group)
        # CPython 3.12.0-3.12.2: a TaskGroup whose child failed leaves its parent task marked as
        # cancelling (gh-116720), which would break every later asyncio.timeout in this task.
        while task is not None and task.cancelling() > cancelling_before:
            task.uncancel()
        self._record.write_usage()
        stop = self._live.stop
        self.meter.finish(error=str(failure) if failure is not None
                          else stop.reason if stop is not None and stop.error else None)
        if failure is not None:
            raise failure
        assert self._live.stop is not None
        return self._live.stop

    # -- when to stop --------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self.meter.tick(now)
        self._check_outputs()
        self._control.tick(now)
        limit = self.options.max_duration_s
        if limit is not None and now - self._run_started >= limit:
            self.request_stop(f"reached --max-duration ({limit:g} s)")
        elif self._idle_done(now):
            self.request_stop("input finished and the conversation is idle")

    def _next_due(self, now: float) -> float | None:
        """When `_tick` next has something to decide if nothing else happens (None: only when
        poked). Each part's deadline is computed, not polled for."""
        play_check = None
        if self._player.pending:
            play_check = now + min(max(self.sink.pending_ms() / 1000, 0.02), PLAYING_CHECK_S)
        limit = self.options.max_duration_s
        return _earliest(
            play_check, self._run_started + limit if limit is not None else None,
            self.meter.next_due(now, play_check or now + BUSY_POLL_S),
            self._control.next_due(now),
            self._idle_due(now, play_check))

    def _idle_due(self, now: float, play_check: float | None) -> float | None:
        idle = self.options.idle_exit_s
        if idle is None:
            return None
        if self._input_done_at is None:  # set by _idle_done once the input has finished
            if self._text is not None and self._text.ended:
                return self._text.answer_deadline()  # its answer pokes; else it is waited for so long
            return None  # the microphone pokes when the input finishes
        link = self._live.link
        if self._live.tools_running > 0 or link is None or not link.session.at_turn_boundary:
            return now + BUSY_POLL_S
        if play_check is not None:
            return play_check
        return max(self._live.last_activity, self._input_done_at) + idle

    def _audio_sent(self, chunk: bytes) -> None:
        self._taps.audio(chunk)
        if self._watch_input_end and self._input_finished():
            self._watch_input_end = False
            self._live.poke()

    def _check_outputs(self) -> None:
        """A broken output (a full disk under the WAV or the transcript) ends the run with its error.

        Going on would lose what the user came to record; the session is still closed in order and
        the transcript, if it is the one still writable, gets its end record.
        """
        problem = self.sink.failure() or self.transcript.failure
        if problem is not None:
            self.request_stop(problem, code=1, graceful=False, error=True)

    def _idle_done(self, now: float) -> bool:
        idle = self.options.idle_exit_s
        finished = self._text.finished if self._text is not None else self._input_finished()
        if idle is None or not finished:
            return False
        if self._input_done_at is None:
            self._input_done_at = now
        link = self._live.link
        busy = (self._live.tools_running > 0 or link is None or not link.session.at_turn_boundary
                or self._player.pending)
        quiet_since = max(self._live.last_activity, self._input_done_at)
        return not busy and now - quiet_since >= idle


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


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
