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
from collections import deque
from dataclasses import dataclass, field

from runner.audio.pcm import sum_of_squares, sums_of_squares

SPEECH_DBFS = -40.0
# Chunks wait, unmeasured, until the gate is asked (a rotation is due, a user transcript came) or
# this many of them (about two seconds of a live microphone) are waiting; then they are measured
# in one batch. Measuring each 32 ms chunk on arrival cost ~100 us of numpy call overhead each
# (cold caches in a real run), the largest part of the microphone's per-chunk cost.
PENDING_CHUNKS = 64
# Bounds a batch's int32 arrays (twice its bytes) below glibc's 128 KiB mmap threshold: a larger
# batch had its arrays mapped and unmapped on every measurement, ten times slower.
PENDING_BYTES = 48 * 1024


@dataclass
class HandoverGate:
    quiet_s: float = 0.8
    unanswered_s: float = 3.0
    speech_dbfs: float = SPEECH_DBFS
    _last_speech: float | None = None  # of the chunks measured so far
    _last_answer: float | None = None
    # (time heard, chunk) not yet measured, oldest first; bounded by PENDING_CHUNKS/PENDING_BYTES.
    _pending: deque[tuple[float, bytes]] = field(default_factory=deque)
    _pending_bytes: int = 0

    def heard(self, pcm: bytes, now: float) -> None:
        """Feed one microphone frame (16-bit mono PCM) that is going to the model."""
        self._pending.append((now, pcm))
        self._pending_bytes += len(pcm)
        if len(self._pending) >= PENDING_CHUNKS or self._pending_bytes >= PENDING_BYTES:
            self._measure()

    def answered(self, now: float) -> None:
        """The assistant finished a turn (END_TURN)."""
        self._last_answer = now

    def last_speech(self) -> float | None:
        """When the latest loud chunk was heard (None: none yet): the user's end of speech as far as
        the runner can tell."""
        self._measure()
        return self._last_speech

    def open(self, now: float, *, at_turn_boundary: bool) -> bool:
        if not at_turn_boundary:
            return False
        last_speech = self.last_speech()
        if last_speech is None:
            return True
        silent_for = now - last_speech
        if silent_for < self.quiet_s:
            return False
        answered = self._last_answer is not None and self._last_answer >= last_speech
        return answered or silent_for >= self.unanswered_s

    def _measure(self) -> None:
        """Measure the waiting chunks, each once. Only the newest loud one matters, so the levels are
        compared newest first and the search stops there."""
        if not self._pending:
            return
        pending = self._pending
        sums = sums_of_squares([pcm for _, pcm in pending])
        for (at, pcm), total in zip(reversed(pending), reversed(sums), strict=True):
            if _dbfs(total, len(pcm) // 2) >= self.speech_dbfs:
                self._last_speech = at
                break
        pending.clear()
        self._pending_bytes = 0


def _dbfs(total: int, count: int) -> float:
    """Mean power in dBFS of `count` samples whose squares sum to `total`."""
    if not count:
        return -math.inf
    mean_square = total / count
    return -math.inf if mean_square == 0 else 10 * math.log10(mean_square / 32768.0**2)


def chunk_dbfs(pcm: bytes) -> float:
    """A chunk's mean power in dBFS (event taps ask it for every chunk sent).

    Digital silence (a muted microphone, a file's padding) is recognised by a C byte count rather
    than numpy, whose per-call overhead dominates on a chunk this small."""
    if pcm.count(0) == len(pcm):
        return -math.inf
    return _dbfs(sum_of_squares(pcm), len(pcm) // 2)
