"""Event taps: let an observer (a test runner, a recorder, a meter) see the conversation happen.

A tap sees every output event as it arrives and what the runner sent that matters for a turn:
the user's typed text, the edges of the user's speech (its first and last loud audio chunk) and
tool results. Times are the conversation's monotonic clock. A tap never breaks the conversation:
one that raises is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from runner.protocol.events import OutputEvent
from runner.protocol.handover import SPEECH_DBFS, chunk_dbfs

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

    def __init__(self, taps: Sequence[EventTap], clock: Callable[[], float]) -> None:
        self._taps = list(taps)
        self._clock = clock
        self._speaking = False
        self._last_loud: float | None = None

    def __bool__(self) -> bool:
        return bool(self._taps)

    def output(self, event: OutputEvent) -> None:
        if self._taps:
            at = self._clock()
            self._each(lambda tap: tap.output(event, at))

    def sent(self, kind: str, **fields: Any) -> None:
        if self._taps:
            at = self._clock()
            self._each(lambda tap: tap.sent(kind, at, **fields))

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

