"""The hand-over gate measures microphone chunks lazily, in batches, yet answers exactly as the eager
gate it replaced (kept below as the reference): for any sequence of heard / answered / open /
last_speech calls, the same answers. Its waiting chunks stay bounded, and each is measured once."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runner.protocol.handover as handover
from runner.protocol.handover import PENDING_BYTES, PENDING_CHUNKS, SPEECH_DBFS, HandoverGate, chunk_dbfs


@dataclass
class EagerGate:
    """The gate as it was: every chunk's level measured as it is heard (pure Python here)."""

    quiet_s: float = 0.8
    unanswered_s: float = 3.0
    speech_dbfs: float = SPEECH_DBFS
    _last_speech: float | None = None
    _last_answer: float | None = None

    def heard(self, pcm: bytes, now: float) -> None:
        if _reference_dbfs(pcm) >= self.speech_dbfs:
            self._last_speech = now

    def answered(self, now: float) -> None:
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


def _reference_dbfs(pcm: bytes) -> float:
    count = len(pcm) // 2
    if not count:
        return -math.inf
    values = struct.unpack(f"<{count}h", pcm[:2 * count])
    mean_square = sum(v * v for v in values) / count
    return -math.inf if mean_square == 0 else 10 * math.log10(mean_square / 32768.0**2)


# -40 dBFS is a constant amplitude of ~327.7: samples around it make chunks on both sides of the
# threshold and some a rounding away from it.
near_threshold = st.integers(-420, 420)
samples = st.one_of(near_threshold, st.just(0), st.integers(-32768, 32767))
small_chunk = st.builds(lambda xs, odd: struct.pack(f"<{len(xs)}h", *xs) + (b"\x07" if odd else b""),
                        st.lists(samples, max_size=24), st.booleans())
# Big constant chunks reach the byte bound in a few calls.
big_chunk = st.builds(lambda v, n: struct.pack("<h", v) * n, near_threshold, st.integers(1, 20_000))
chunk = st.one_of(small_chunk, small_chunk, small_chunk, big_chunk)
times = st.floats(0, 20, allow_nan=False)
op = st.one_of(
    st.tuples(st.just("heard"), chunk, times),
    st.tuples(st.just("heard"), chunk, times),
    st.tuples(st.just("heard"), chunk, times),
    st.tuples(st.just("answered"), times),
    st.tuples(st.just("open"), times, st.booleans()),
    st.tuples(st.just("last_speech")),
)


def _apply(gate: Any, step: tuple[Any, ...]) -> object:
    match step:
        case ("heard", pcm, now):
            return gate.heard(pcm, now)
        case ("answered", now):
            return gate.answered(now)
        case ("open", now, boundary):
            return gate.open(now, at_turn_boundary=boundary)
        case _:
            return gate.last_speech() if isinstance(gate, HandoverGate) else gate._last_speech


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(op, max_size=120), quiet_s=st.floats(0, 5), unanswered_s=st.floats(0, 8))
def test_the_lazy_gate_answers_exactly_as_the_eager_one(steps: list[tuple[Any, ...]], quiet_s: float,
                                                        unanswered_s: float) -> None:
    lazy = HandoverGate(quiet_s=quiet_s, unanswered_s=unanswered_s)
    eager = EagerGate(quiet_s=quiet_s, unanswered_s=unanswered_s)
    for step in steps:
        assert _apply(lazy, step) == _apply(eager, step), step
        assert len(lazy._pending) < PENDING_CHUNKS and lazy._pending_bytes < PENDING_BYTES
    assert lazy.last_speech() == eager._last_speech


@settings(max_examples=100, deadline=None)
@given(pcm=small_chunk)
def test_chunk_dbfs_is_the_reference_level(pcm: bytes) -> None:
    assert chunk_dbfs(pcm) == _reference_dbfs(pcm)


@pytest.mark.parametrize("pcm", [b"", bytes(1024), bytes(1024) + b"\x05", b"\x01\x00" + bytes(1022)])
def test_chunk_dbfs_of_silence_and_near_silence(pcm: bytes) -> None:
    # Digital silence takes a shortcut; a single quiet sample or a trailing odd byte must not.
    assert chunk_dbfs(pcm) == _reference_dbfs(pcm)


LOUD = struct.pack("<h", 3000) * 512
QUIET = bytes(1024)


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many chunks each batch measurement took (the real function, counted)."""
    batches: list[int] = []
    real = handover.sums_of_squares

    def counting(chunks: Any) -> list[int]:
        batches.append(len(chunks))
        return real(chunks)

    monkeypatch.setattr(handover, "sums_of_squares", counting)
    return batches


def test_chunks_wait_unmeasured_until_asked(measured: list[int]) -> None:
    gate = HandoverGate()
    for k in range(20):
        gate.heard(LOUD if k == 3 else QUIET, k * 0.032)
    assert measured == []  # nothing measured per chunk
    assert not gate.open(3 * 0.032 + 0.1, at_turn_boundary=True)  # the loud chunk is found
    assert measured == [20]
    assert gate.last_speech() == 3 * 0.032
    assert not gate.open(10.0, at_turn_boundary=False)  # not at a boundary: nothing to measure
    assert measured == [20]  # and nothing measured twice


def test_a_long_run_unasked_stays_bounded_and_measures_each_chunk_once(measured: list[int]) -> None:
    gate = HandoverGate()
    n = 10_000
    for k in range(n):
        gate.heard(LOUD if k == n - 40 else QUIET, k * 0.032)
        assert len(gate._pending) < PENDING_CHUNKS
    assert gate.last_speech() == (n - 40) * 0.032
    assert sum(measured) == n  # each chunk once, in batches
    assert len(measured) <= n // 32 + 1


def test_big_chunks_are_bounded_by_bytes(measured: list[int]) -> None:
    gate = HandoverGate()
    big = bytes(PENDING_BYTES // 4)
    for k in range(10):
        gate.heard(big, float(k))
        assert gate._pending_bytes < PENDING_BYTES
    assert measured == [4, 4]
