"""Pure helpers on 16-bit little-endian PCM bytes. No devices, no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

SAMPLE_WIDTH = 2
# rms_dbfs of digital silence: a finite floor keeps comparisons and JSON output simple.
SILENCE_DBFS = -120.0


def silence(n_ms: float, sample_rate: int, channels: int = 1) -> bytes:
    """`n_ms` milliseconds of zero samples (whole frames, rounded down)."""
    frames = int(sample_rate * n_ms / 1000)
    return bytes(frames * channels * SAMPLE_WIDTH)


def duration_ms(pcm: bytes | bytearray, sample_rate: int, channels: int = 1) -> float:
    """How long `pcm` plays, in milliseconds."""
    return len(pcm) / (sample_rate * channels * SAMPLE_WIDTH) * 1000


def samples(pcm: bytes | bytearray) -> npt.NDArray[np.int16]:
    """The int16 samples of `pcm` (a read-only view; a trailing odd byte is ignored)."""
    usable = len(pcm) - len(pcm) % SAMPLE_WIDTH
    return np.frombuffer(memoryview(pcm)[:usable], dtype="<i2")


def rms_dbfs(pcm: bytes | bytearray) -> float:
    """RMS level relative to a full-scale square wave (0 dBFS); `SILENCE_DBFS` for silence/empty."""
    x = samples(pcm).astype(np.float64)
    if x.size == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.mean(x * x)))
    if rms == 0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20 * math.log10(rms / 32768))


def sum_of_squares(pcm: bytes | bytearray) -> int:
    """The exact sum of the squared int16 samples of `pcm` (a trailing odd byte is ignored).

    In int64, which cannot overflow below 2**33 samples; about 4x faster than a Python loop over
    a 32 ms microphone chunk (event taps measure every chunk as it is sent).
    """
    x = samples(pcm).astype(np.int64)
    return int(x @ x)


def sums_of_squares(chunks: Sequence[bytes]) -> list[int]:
    """`sum_of_squares` of each chunk, for a batch of equally long chunks in a few numpy calls.

    On a 32 ms chunk numpy's per-call overhead, not the arithmetic, is the cost (about 100 us per
    chunk with the cold caches of a real run), so a batch of a live microphone's chunks, which all
    have one length, is measured as one array. Other batches are measured chunk by chunk.
    """
    if not chunks:
        return []
    size = len(chunks[0])
    if size % SAMPLE_WIDTH or any(len(c) != size for c in chunks):
        return [sum_of_squares(c) for c in chunks]
    # A square of an int16 fits int32 (at most 2**30); the sums are taken in int64.
    x = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.int32).reshape(len(chunks), -1)
    sums: list[int] = (x * x).sum(axis=1, dtype=np.int64).tolist()
    return sums


def split(pcm: bytes, chunk_bytes: int) -> Iterator[bytes]:
    """`pcm` cut into `chunk_bytes` pieces; the last piece may be shorter."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    for start in range(0, len(pcm), chunk_bytes):
        yield pcm[start:start + chunk_bytes]


def to_mono(pcm: bytes, channels: int) -> bytes:
    """Average interleaved channels into one (no-op for mono)."""
    if channels == 1:
        return pcm
    frames = samples(pcm)
    frames = frames[: frames.size - frames.size % channels].reshape(-1, channels)
    return frames.mean(axis=1).round().astype("<i2").tobytes()


def pad_to(pcm: bytes, nbytes: int) -> bytes:
    """`pcm` padded with silence to `nbytes` (unchanged when already that long or longer)."""
    return pcm + bytes(nbytes - len(pcm)) if len(pcm) < nbytes else pcm
