"""Streaming sample-rate conversion of 16-bit mono PCM (soxr, anti-aliased).

A streaming resampler keeps filter state across chunks, so a long stream cut into chunks sounds the
same as one resampled whole, with no clicks at chunk edges. Output chunk lengths vary slightly
(soxr delays the first samples by its filter length); over a stream they add up to
`in_frames * out_rate / in_rate`, and `flush()` returns the tail.
"""

from __future__ import annotations

import numpy as np
import soxr


class Resampler:
    """Resample a stream of int16 mono PCM chunks from `in_rate` to `out_rate`.

    When the rates match this is the identity and costs nothing.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16")
        )
        self._odd = b""

    @property
    def identity(self) -> bool:
        return self._stream is None

    def process(self, pcm: bytes) -> bytes:
        """Resample the next chunk. Odd trailing bytes are kept for the next call."""
        if self._stream is None:
            return pcm
        data = self._odd + pcm
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        x = np.frombuffer(data[:usable], dtype="<i2")
        out: np.ndarray = self._stream.resample_chunk(x)
        return out.astype("<i2", copy=False).tobytes()

    def flush(self) -> bytes:
        """The samples still inside the filter. Call once, at the end of the stream."""
        if self._stream is None:
            return b""
        out: np.ndarray = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        return out.astype("<i2", copy=False).tobytes()
