"""The turn tracker's adapter inside a running conversation: feeds it and reports what it finds.

Each finished turn becomes a transcript `turn` entry, a console line with -v, and (when
OpenTelemetry is configured) a span and histogram samples; the run's summary becomes a
transcript `summary` entry and a few console lines.

The first sample played is what the sink reports: its count of bytes played passing the position
of the answer's first byte. It is polled every PLAY_POLL_S only between an answer's first audio
and its first sample played (tens of milliseconds), so a quiet conversation has no wake-ups for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from runner.console import Console
from runner.errors import TransportError
from runner.protocol.events import AudioOutput, ContentEnd, OutputEvent, UsageEvent
from runner.telemetry.prices import PriceTable
from runner.telemetry.turns import StreamTiming, Summary, ToolTiming, TurnRecord, TurnTracker
from runner.transcript import Transcript
from runner.transports.base import Connector, ConnectorWrapper, Stream

if TYPE_CHECKING:
    from runner.audio.base import AudioSink

PLAY_POLL_S = 0.005
PLAY_WATCH_S = 10.0  # a first sample not played by then (a stalled device) is not waited for


class TelemetryExport(Protocol):
    """Where a conversation's measurements go besides the transcript and console (OpenTelemetry)."""

    def annotate(self, **attributes: str) -> None: ...

    def stream_closed(self, timing: StreamTiming) -> None: ...

    def turn_finished(self, record: TurnRecord) -> None: ...

    def conversation_finished(self, summary: Summary, *, error: str | None) -> None: ...


class TurnMeter:
    def __init__(self, *, model_id: str, prices: PriceTable, transcript: Transcript, console: Console,
                 sink: AudioSink, clock: Callable[[], float], run_started: Callable[[], float],
                 spawn: Callable[[Coroutine[Any, Any, None], str], object],
                 export: TelemetryExport | None = None,
                 voice: Callable[[], str | None] = lambda: None,
                 stopping: Callable[[], bool] = lambda: False,
                 last_loud: Callable[[], float | None] = lambda: None) -> None:
        self._transcript = transcript
        self._console = console
        self._sink = sink
        self._clock = clock
        self._run_started = run_started
        self._spawn = spawn
        self.export = export
        self._voice = voice
        self._stopping = stopping
        self._last_loud = last_loud
        self.tracker = TurnTracker(model_id=model_id, prices=prices, on_turn=self._turn_finished)
        # Bytes of assistant audio handed to the player, and dropped by flushes: the position of
        # an answer's first byte among what the sink will play.
        self._handed = 0
        self._dropped = 0
        self._flushes = 0
        self._await_play: int | None = None  # the turn whose first audio is about to be queued
        self.summary: Summary | None = None
        transcript.listen(self._transcript_entry, before=self._before_entry)

    # -- fed by the conversation -----------------------------------------------------------------

    def output(self, event: OutputEvent, at: float) -> None:
        match event:
            case AudioOutput():
                if self.tracker.assistant_audio(at):
                    self._await_play = self.tracker.open_turn
            case UsageEvent(delta=delta):
                self.tracker.usage(delta)
            case ContentEnd(stop_reason="END_TURN"):
                self.tracker.answer_ended(at)
            case _:
                pass

    def heard(self, kind: str, at: float) -> None:
        """A text block completed (record.Heard): the user's transcript starts a turn."""
        if kind == "user":
            loud = self._last_loud()
            if loud is not None:
                self.tracker.mic_loud(loud)
            self.tracker.user_heard(at)
        elif kind == "greeting":
            self.tracker.greeting_heard(at)

    def queued(self, nbytes: int) -> None:
        """Assistant audio goes to the player (after the policy let it through)."""
        turn, self._await_play = self._await_play, None
        if turn is not None and self._played_known():
            target = self._handed - self._dropped
            self._spawn(self._watch_played(turn, target, self._flushes), f"played:{turn}")
        self._handed += nbytes

    def flushed(self, nbytes: int) -> None:
        """The player dropped `nbytes` (a barge-in): an answer waiting to be heard never will be."""
        self._dropped += nbytes
        self._flushes += 1

    def tick(self, now: float) -> None:
        self.tracker.tick(now, playing=self._playing())

    def next_due(self, now: float, played_check: float) -> float | None:
        """When `tick` may next close the open turn: TURN_CLOSE_S after its END_TURN, or, while its
        answer still plays, at `played_check` (the caller's estimate of the playing's end)."""
        closes = self.tracker.closes_at()
        if closes is None:
            return None
        return played_check if self._playing() else closes

    def _playing(self) -> bool:
        # Still playing: queued audio not yet dropped or played (the sink counts what it played).
        return self._played_known() and self._handed - self._dropped > self._sink.statistics().bytes_played

    def _played_known(self) -> bool:
        # A sink may say its bytes_played tells nothing (`played_known = False`): nobody hears it
        # (serve's POST /invocations), or the far end does not say what it played (a /ws client
        # that echoes no marks). Then a turn has no "first sample played" and is not held open.
        known: bool = getattr(self._sink, "played_known", True)
        return known

    def write_summary(self) -> Summary:
        """The open turn and the summary go to the transcript and the console (once)."""
        if self.summary is None:
            self.summary = summary = self.tracker.finish(self._clock())
            if summary.turns:  # a run that never got to a turn (an unreachable endpoint) has none
                self._transcript.write("summary", **summary.entry())
                self._console.turn_summary(summary_lines(summary))
        return self.summary

    def finish(self, *, error: str | None = None) -> Summary:
        """The run ended: the summary is written if it was not yet, and the trace ends (once)."""
        summary = self.write_summary()
        export, self.export = self.export, None
        if export is not None:
            export.conversation_finished(summary, error=error)
        return summary

    # -- streams (the connector wrapper reports them) --------------------------------------------

    def stream_opened(self, index: int) -> None:
        self.tracker.stream_opened(index, self._clock())
        voice = self._voice()
        if index == 1 and voice is not None and self.export is not None:
            self.export.annotate(voice=voice)

    def stream_accepted(self, index: int) -> None:
        self.tracker.stream_accepted(index, self._clock())

    def stream_closed(self, index: int, error: str | None) -> None:
        timing = self.tracker.stream_closed(index, self._clock(), error)
        if timing is not None and self.export is not None:
            self.export.stream_closed(timing)

    # -- inside ----------------------------------------------------------------------------------

    async def _watch_played(self, turn: int, target: int, flushes: int) -> None:
        deadline = self._clock() + PLAY_WATCH_S
        while self._clock() < deadline and self._flushes == flushes and self._sink.failure() is None:
            if self._sink.statistics().bytes_played > target:
                self.tracker.played(self._clock(), turn)
                return
            await asyncio.sleep(PLAY_POLL_S)

    def _before_entry(self, kind: str, fields: dict[str, Any]) -> None:
        # A transcript ends with its session end: when the run is stopping, the last turn and the
        # summary are written just before it (its final usageEvent has been counted by then).
        if kind == "session" and fields.get("event") == "end" and self._stopping() and self.summary is None:
            self.write_summary()

    def _transcript_entry(self, entry: dict[str, Any]) -> None:
        # Tool durations are measured where the tool runs (runner.tools.invoke) and interruptions
        # decided by the policy (events.py); their transcript entries report them, so they are
        # taken from there.
        if entry["type"] == "interrupted":  # the policy's barge-in, whichever signal it came from
            self.tracker.interrupted()
            return
        if entry["type"] != "tool_result":
            return
        duration = float(entry.get("duration_ms", 0.0))
        error = entry.get("error")
        self.tracker.tool_finished(ToolTiming(str(entry.get("name")), duration, error is None,
                                              self._clock() - duration / 1000,
                                              None if error is None else str(error)))

    def _turn_finished(self, record: TurnRecord) -> None:
        self._transcript.write("turn", **record.entry(self._run_started()))
        self._console.turn(turn_line(record))
        if self.export is not None:
            self.export.turn_finished(record)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def turn_line(record: TurnRecord) -> str:
    """The -v console line of one turn."""
    f = record.figures
    parts = [f"turn {record.number} ({record.trigger}{', interrupted' if record.interrupted else ''})"]
    if record.speech_end_at is not None:
        parts.append(f"end of speech -> audio {_ms(f.get('speech_end_to_first_audio_ms'))}, "
                     f"-> played {_ms(f.get('speech_end_to_first_played_ms'))}")
    if record.tools:
        parts.append(f"tools {_ms(f.get('tool_ms'))}")
    if record.stream_setup_ms is not None:
        parts.append(f"stream set-up {_ms(record.stream_setup_ms)}")
    t = record.tokens
    parts.append(f"tokens {t.input_speech + t.input_text} in, {t.output_speech + t.output_text} out")
    if record.cost_usd is not None:
        parts.append(f"${record.cost_usd:.4f}")
    return "; ".join(parts)


_LABELS = {
    "speech_end_to_transcript_ms": "end of speech -> transcript",
    "speech_end_to_first_audio_ms": "end of speech -> first audio",
    "speech_end_to_first_played_ms": "end of speech -> first played",
    "tool_ms": "tools per turn",
    "stream_setup_ms": "stream set-up",
}


def summary_lines(summary: Summary) -> list[str]:
    """The console's end-of-run summary."""
    lines = [f"summary: {summary.turns} turn{'s' if summary.turns != 1 else ''} (p50 / p95)"]
    for name, figure in summary.figures.items():
        lines.append(f"  {_LABELS[name]:<32}{figure['p50']:>8.0f} / {figure['p95']:.0f} ms"
                     f"  (n={figure['n']:.0f})")
    t = summary.tokens
    cost = (f"estimated cost ${summary.cost_usd:.4f} (prices: {summary.price_source})"
            if summary.cost_usd is not None else f"no price for this model (prices: {summary.price_source})")
    lines.append(f"  tokens: {t.input_speech} speech + {t.input_text} text in, {t.output_speech} speech + "
                 f"{t.output_text} text out; {cost}")
    return lines


class MeteredConnector(ConnectorWrapper):
    """A Connector whose streams report when they were opened, accepted and closed.

    Stream set-up is timed from the open request to the service's acceptance (HTTP 200), the part
    of a (re)connection the user waits through. Only those three calls are wrapped: audio goes
    straight to the inner stream's bound methods, so the hot path costs nothing more.
    """

    def __init__(self, inner: Connector, meter: TurnMeter) -> None:
        super().__init__(inner)
        self._meter = meter
        self._opened = 0

    async def open_stream(self, model_id: str) -> Stream:
        # Numbered as the supervisor numbers its links: a failed open still counts.
        self._opened += 1
        index = self._opened
        self._meter.stream_opened(index)
        try:
            stream = await self._inner.open_stream(model_id)
        except TransportError as exc:
            self._meter.stream_closed(index, exc.kind)
            raise
        return _MeteredStream(stream, index, self._meter)



class _MeteredStream:
    def __init__(self, inner: Stream, index: int, meter: TurnMeter) -> None:
        self._inner = inner
        self._index = index
        self._meter = meter
        self._error: str | None = None
        self._closed = False
        self.send = inner.send
        self.close_input = inner.close_input

    async def wait_accepted(self) -> None:
        try:
            await self._inner.wait_accepted()
        except TransportError as exc:
            self._error = exc.kind
            raise
        self._meter.stream_accepted(self._index)

    async def receive(self) -> bytes | None:
        try:
            return await self._inner.receive()
        except TransportError as exc:
            self._error = self._error or exc.kind
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._closed:
                self._closed = True
                self._meter.stream_closed(self._index, self._error)
