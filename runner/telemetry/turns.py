"""Per-turn latency, tokens and cost: a sans-IO tracker fed by the conversation's events.

A turn starts when the user's input reaches the model: a USER transcript of speech arrives, a
typed line is sent, or (Nova 2) the greeting's echo arrives. It ends when the next one starts, or
when the run ends, or once its answer has played and TURN_CLOSE_S have passed since its END_TURN
(the last usageEvent of a turn comes after END_TURN, and the service sends an answer faster than it
plays: a barge-in can still cut it until it has played).

What the runner can know of the user's end of speech is the time of the last loud microphone
chunk it sent before the USER transcript arrived (the service decides where speech ends and does
not say), or the moment a typed line was sent. From it: end of speech -> first assistant audio
decoded, and -> first sample played (as the sink counts it). Times are the conversation's
monotonic clock, in seconds; figures are in milliseconds.

Nothing here does IO or reads a clock: every call carries its time, so the tests drive it
synchronously with made-up times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from runner.protocol.events import TokenCounts
from runner.telemetry.prices import PriceTable

# After END_TURN, the turn stays open this long for its last usageEvent (then it is reported).
TURN_CLOSE_S = 1.0

Trigger = Literal["speech", "text", "greeting"]

# The figures every turn may carry, in the order the summary lists them.
FIGURES = ("speech_end_to_transcript_ms", "speech_end_to_first_audio_ms", "speech_end_to_first_played_ms",
           "tool_ms", "stream_setup_ms")


@dataclass(frozen=True, slots=True)
class ToolTiming:
    name: str
    duration_ms: float
    ok: bool
    started_at: float  # the conversation's clock, s
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StreamTiming:
    index: int
    opened_at: float
    accepted_at: float | None  # None: never accepted (refused, or the connection failed)
    closed_at: float | None = None
    error: str | None = None

    @property
    def setup_ms(self) -> float | None:
        return None if self.accepted_at is None else (self.accepted_at - self.opened_at) * 1000


@dataclass(frozen=True, slots=True)
class TurnRecord:
    number: int
    trigger: Trigger
    started_at: float  # the transcript's arrival, or the typed line's sending
    ended_at: float
    speech_end_at: float | None
    first_audio_at: float | None
    first_played_at: float | None
    stream: int | None
    stream_setup_ms: float | None  # the stream this turn is the first on (opened since the last turn)
    tools: tuple[ToolTiming, ...]
    tokens: TokenCounts
    cost_usd: float | None
    interrupted: bool

    def _since_speech_end(self, at: float | None) -> float | None:
        if self.speech_end_at is None or at is None:
            return None
        return (at - self.speech_end_at) * 1000

    @property
    def figures(self) -> dict[str, float]:
        """The figures this turn has (a text turn has no transcript delay, a silent one no audio)."""
        values: dict[str, float | None] = {
            "speech_end_to_transcript_ms": (self._since_speech_end(self.started_at)
                                            if self.trigger == "speech" else None),
            "speech_end_to_first_audio_ms": self._since_speech_end(self.first_audio_at),
            "speech_end_to_first_played_ms": self._since_speech_end(self.first_played_at),
            "tool_ms": sum(t.duration_ms for t in self.tools) if self.tools else None,
            "stream_setup_ms": self.stream_setup_ms,
        }
        return {k: round(v, 1) for k, v in values.items() if v is not None}

    def entry(self, run_started: float) -> dict[str, Any]:
        """The transcript's `turn` entry."""
        entry: dict[str, Any] = {"turn": self.number, "trigger": self.trigger,
                                 "at_s": round(self.started_at - run_started, 3)}
        if self.stream is not None:
            entry["stream"] = self.stream
        entry.update(self.figures)
        if self.tools:
            entry["tools"] = [{"name": t.name, "duration_ms": round(t.duration_ms, 1), "ok": t.ok}
                              for t in self.tools]
        entry["tokens"] = _tokens(self.tokens)
        if self.cost_usd is not None:
            entry["cost_usd"] = round(self.cost_usd, 6)
        if self.interrupted:
            entry["interrupted"] = True
        return entry


@dataclass(frozen=True, slots=True)
class Summary:
    turns: int
    figures: dict[str, dict[str, float]]  # figure -> {"p50", "p95", "n"}
    tokens: TokenCounts
    cost_usd: float | None
    price_source: str

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"turns": self.turns, "figures": self.figures, "tokens": _tokens(self.tokens)}
        if self.cost_usd is not None:
            entry["cost_usd"] = round(self.cost_usd, 6)
        entry["prices"] = self.price_source
        return entry


def _tokens(t: TokenCounts) -> dict[str, int]:
    return {"input_speech": t.input_speech, "input_text": t.input_text, "output_speech": t.output_speech,
            "output_text": t.output_text,
            "total": t.input_speech + t.input_text + t.output_speech + t.output_text}


def add_tokens(a: TokenCounts, b: TokenCounts) -> TokenCounts:
    return TokenCounts(a.input_speech + b.input_speech, a.input_text + b.input_text,
                       a.output_speech + b.output_speech, a.output_text + b.output_text)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of a non-empty sequence: always a measured value."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _OpenTurn:
    number: int
    trigger: Trigger
    started_at: float
    speech_end_at: float | None
    stream: int | None
    stream_setup_ms: float | None
    first_audio_at: float | None = None
    first_played_at: float | None = None
    tools: list[ToolTiming] = field(default_factory=list)
    tokens: TokenCounts = field(default_factory=TokenCounts)
    answered_at: float | None = None  # END_TURN
    interrupted: bool = False


class TurnTracker:
    """Feed it what happens; it calls `on_turn` with each finished turn, in order."""

    def __init__(self, *, model_id: str, prices: PriceTable, on_turn: Callable[[TurnRecord], None],
                 close_after_s: float = TURN_CLOSE_S) -> None:
        self._model_id = model_id
        self._prices = prices
        self._on_turn = on_turn
        self._close_after_s = close_after_s
        self._turn: _OpenTurn | None = None
        self._turns: list[TurnRecord] = []
        self._last_loud: float | None = None
        self._last_start: float | None = None
        self._stream: int | None = None
        self._new_stream_setup_ms: float | None = None  # a stream accepted since the last turn began
        self._streams: list[StreamTiming] = []
        self._tokens = TokenCounts()  # every delta of the run, in a turn or not
        self._unassigned = TokenCounts()  # deltas that came while no turn was open

    # -- what happened ---------------------------------------------------------------------------

    def mic_loud(self, at: float) -> None:
        """A microphone chunk at speech level was sent to the model."""
        self._last_loud = at

    def text_sent(self, at: float) -> None:
        """A typed line went to the model: a turn whose end of speech is now."""
        self._start("text", at, speech_end_at=at)

    def user_heard(self, at: float) -> None:
        """A USER transcript of speech arrived: the user's turn reached the model."""
        loud = self._last_loud
        fresh = loud is not None and (self._last_start is None or loud > self._last_start)
        self._start("speech", at, speech_end_at=loud if fresh else None)

    def greeting_heard(self, at: float) -> None:
        """The greeting's echo arrived (Nova 2): the assistant speaks first; no end of speech."""
        self._start("greeting", at, speech_end_at=None)

    def assistant_audio(self, at: float) -> bool:
        """Assistant audio was decoded; True when it is the first of the open turn's answer."""
        turn = self._turn
        if turn is None or turn.first_audio_at is not None or turn.answered_at is not None:
            return False
        turn.first_audio_at = at
        return True

    def played(self, at: float, turn_number: int) -> None:
        """The first sample of turn `turn_number`'s answer was played (as the sink reports it)."""
        turn = self._turn
        if turn is not None and turn.number == turn_number and turn.first_played_at is None:
            turn.first_played_at = at

    def tool_finished(self, timing: ToolTiming) -> None:
        if self._turn is not None:
            self._turn.tools.append(timing)

    def usage(self, delta: TokenCounts) -> None:
        self._tokens = add_tokens(self._tokens, delta)
        if self._turn is not None:
            self._turn.tokens = add_tokens(self._turn.tokens, delta)
        else:
            self._unassigned = add_tokens(self._unassigned, delta)

    def answer_ended(self, at: float) -> None:
        """END_TURN: the service has sent the whole answer."""
        if self._turn is not None:
            self._turn.answered_at = at

    def interrupted(self) -> None:
        """A barge-in cut the open turn's answer (the transcript's `interrupted`)."""
        if self._turn is not None:
            self._turn.interrupted = True

    def stream_opened(self, index: int, at: float) -> None:
        self._streams.append(StreamTiming(index, at, None))

    def stream_accepted(self, index: int, at: float) -> None:
        timing = self._stream_timing(index)
        if timing is None:
            return
        timing = self._replace_stream(timing, accepted_at=at)
        self._stream = index
        self._new_stream_setup_ms = timing.setup_ms

    def stream_closed(self, index: int, at: float, error: str | None = None) -> StreamTiming | None:
        timing = self._stream_timing(index)
        if timing is None:
            return None
        return self._replace_stream(timing, closed_at=at, error=timing.error or error)

    def tick(self, now: float, *, playing: bool = False) -> None:
        """Time passes: a turn answered TURN_CLOSE_S ago whose answer has played is reported."""
        turn = self._turn
        answered = None if turn is None else turn.answered_at
        if answered is not None and not playing and now - answered >= self._close_after_s:
            self._close(now)

    def closes_at(self) -> float | None:
        """When `tick` reports the open turn, once its answer has played (None: no turn answered)."""
        turn = self._turn
        if turn is None or turn.answered_at is None:
            return None
        return turn.answered_at + self._close_after_s

    def finish(self, now: float) -> Summary:
        """The run ended: the open turn is reported; the run's summary."""
        if self._turn is not None:
            self._close(now)
        return self.summary()

    # -- results ---------------------------------------------------------------------------------

    @property
    def turns(self) -> tuple[TurnRecord, ...]:
        return tuple(self._turns)

    @property
    def streams(self) -> tuple[StreamTiming, ...]:
        return tuple(self._streams)

    @property
    def open_turn(self) -> int | None:
        return None if self._turn is None else self._turn.number

    def summary(self) -> Summary:
        samples: dict[str, list[float]] = {name: [] for name in FIGURES}
        for turn in self._turns:
            for name, value in turn.figures.items():
                if name != "stream_setup_ms":
                    samples[name].append(value)
        # Every stream's set-up counts, also those that served no turn (a rotation at the end).
        samples["stream_setup_ms"] = [s.setup_ms for s in self._streams if s.setup_ms is not None]
        figures = {name: {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
                          "n": len(values)}
                   for name, values in samples.items() if values}
        return Summary(len(self._turns), figures, self._tokens,
                       self._prices.cost(self._model_id, self._tokens), self._prices.source)

    # -- inside ----------------------------------------------------------------------------------

    def _start(self, trigger: Trigger, at: float, *, speech_end_at: float | None) -> None:
        if self._turn is not None:
            self._close(at)
        turn = _OpenTurn(len(self._turns) + 1, trigger, at, speech_end_at, self._stream,
                         self._new_stream_setup_ms, tokens=self._unassigned)
        self._unassigned = TokenCounts()
        self._new_stream_setup_ms = None
        self._turn = turn
        self._last_start = at

    def _close(self, now: float) -> None:
        turn, self._turn = self._turn, None
        assert turn is not None
        record = TurnRecord(
            number=turn.number, trigger=turn.trigger, started_at=turn.started_at, ended_at=now,
            speech_end_at=turn.speech_end_at, first_audio_at=turn.first_audio_at,
            first_played_at=turn.first_played_at, stream=turn.stream, stream_setup_ms=turn.stream_setup_ms,
            tools=tuple(turn.tools), tokens=turn.tokens,
            cost_usd=self._prices.cost(self._model_id, turn.tokens), interrupted=turn.interrupted)
        self._turns.append(record)
        self._on_turn(record)

    def _stream_timing(self, index: int) -> StreamTiming | None:
        return next((s for s in reversed(self._streams) if s.index == index), None)

    def _replace_stream(self, timing: StreamTiming, **changes: Any) -> StreamTiming:
        new = replace(timing, **changes)
        self._streams[self._streams.index(timing)] = new
        return new
