"""Event taps: let an observer (a test runner, a recorder, a meter) see the conversation happen.

A tap sees every output event as it arrives and what the runner sent that matters for a turn:
the user's typed text, the edges of the user's speech (its first and last loud audio chunk) and
tool results. Times are the conversation's monotonic clock. A tap never breaks the conversation:
one that raises is logged and dropped.

The conversation's own turn meter (runner.telemetry.meter) is fed here too, ahead of the taps:
it also hears which text blocks completed and how much assistant audio was queued or flushed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from runner.protocol.events import OutputEvent
from runner.protocol.handover import SPEECH_DBFS, chunk_dbfs

if TYPE_CHECKING:
    from runner.telemetry.meter import TurnMeter

log = logging.getLogger(__name__)

# The user's speech counts as over after this much quiet (a breath inside a sentence is shorter).
SPEECH_END_QUIET_S = 0.5


class EventTap(Protocol):
    def output(self, event: OutputEvent, at: float) -> None:
        """Every output event, as it arrives."""
        ...

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        """Something the runner sent: "user_text" (text=...), "audio" (speaking=True at the first
        loud chunk of an utterance, speaking=False with the time of its last loud chunk),
        "tool_result" (name=..., tool_use_id=...)."""
        ...


class Taps:
    """Every tap of a conversation, called in turn; a failing tap is dropped, never raised."""

    def __init__(self, taps: Sequence[EventTap], clock: Callable[[], float],
                 meter: TurnMeter | None = None) -> None:
        self._taps = list(taps)
        self._clock = clock
        self._meter = meter
        self._speaking = False
        self._last_loud: float | None = None

    def __bool__(self) -> bool:
        return bool(self._taps)

    def output(self, event: OutputEvent) -> None:
        if self._taps or self._meter is not None:
            at = self._clock()
            if self._meter is not None:
                self._meter.output(event, at)
            self._each(lambda tap: tap.output(event, at))

    def sent(self, kind: str, **fields: Any) -> None:
        if self._taps or self._meter is not None:
            at = self._clock()
            if self._meter is not None and kind == "user_text":
                self._meter.tracker.text_sent(at)
            self._each(lambda tap: tap.sent(kind, at, **fields))

    def heard(self, kind: str) -> None:
        """A text block completed (record.Heard.kind): the user's transcript, the greeting's echo..."""
        if self._meter is not None:
            self._meter.heard(kind, self._clock())

    def queued(self, nbytes: int) -> None:
        """Assistant audio went to the player."""
        if self._meter is not None:
            self._meter.queued(nbytes)

    def flushed(self, nbytes: int) -> None:
        """The player dropped what it had not played (a barge-in)."""
        if self._meter is not None:
            self._meter.flushed(nbytes)

    def audio(self, chunk: bytes) -> None:
        """One chunk of the user's audio went to the model: report the edges of speech."""
        if not self._taps:
            return
        now = self._clock()
        if chunk_dbfs(chunk) >= SPEECH_DBFS:
            self._last_loud = now
            if not self._speaking:
                self._speaking = True
                self._each(lambda tap: tap.sent("audio", now, speaking=True))
        elif self._speaking and self._last_loud is not None and now - self._last_loud >= SPEECH_END_QUIET_S:
            self._speaking = False
            last = self._last_loud
            self._each(lambda tap: tap.sent("audio", last, speaking=False))

    def _each(self, call: Callable[[EventTap], None]) -> None:
        for tap in list(self._taps):
            try:
                call(tap)
            except Exception:  # a tap is someone else's code: it must not end the conversation
                log.exception("event tap %r failed; it is dropped", tap)
                self._taps.remove(tap)

