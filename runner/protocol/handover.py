"""When is it safe to hand the conversation over to a new stream? (sans-IO, clock injected)

The service decides where turns end from the audio it hears; the client cannot see that. A
rotation while the user is speaking, or after they stopped but before the service answered,
would strand that utterance on the old stream. So the client keeps its own coarse view of user
speech (frame energy) and allows a hand-over only when:
- the session is at a turn boundary (no answer, no open block, no pending tool), and
- the microphone has been quiet for `quiet_s`, and
- everything the user said has been answered (an assistant END_TURN came after the last speech),
  or the user has been silent for `unanswered_s` (the service evidently took it for noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner.audio.pcm import sum_of_squares

SPEECH_DBFS = -40.0


@dataclass
class HandoverGate:
    quiet_s: float = 0.8
    unanswered_s: float = 3.0
    speech_dbfs: float = SPEECH_DBFS
    _last_speech: float | None = None
    _last_answer: float | None = None

    def heard(self, pcm: bytes, now: float) -> None:
        """Feed one microphone frame (16-bit mono PCM) that is going to the model."""
        if chunk_dbfs(pcm) >= self.speech_dbfs:
            self._last_speech = now

    def answered(self, now: float) -> None:
        """The assistant finished a turn (END_TURN)."""
        self._last_answer = now

    def open(self, now: float, *, at_turn_boundary: bool) -> bool:
        if not at_turn_boundary:
            return False
        if self._last_speech is None:
            return True
        silent_for = now - self._last_speech
        if silent_for < self.quiet_s:
            return False
        answered = self._last_answer is not None and self._last_answer >= self._last_speech
        return answered or silent_for >= self.unanswered_s


def chunk_dbfs(pcm: bytes) -> float:
    """A chunk's mean power in dBFS (it runs on every microphone chunk, so in C: see sum_of_squares)."""
    count = len(pcm) // 2
    if not count:
        return -math.inf
    mean_square = sum_of_squares(pcm) / count
    return -math.inf if mean_square == 0 else 10 * math.log10(mean_square / 32768.0**2)
