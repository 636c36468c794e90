"""Real-time pacing against a monotonic clock, and the base class of file/null sources.

Pacing schedules each chunk at `start + n * period` rather than sleeping a period after each
chunk, so the time spent producing a chunk never accumulates into drift. The clock and the sleep
function are injected: tests drive a fake clock and run without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from runner.audio.base import AudioFormat, SourceStatistics
from runner.errors import AudioDeviceError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# After a stall longer than this (a suspended laptop, a debugger), restart the schedule instead of
# bursting the backlog out as fast as possible.
MAX_LAG_S = 0.5


class Pacer:
    """Yields control once per `period` seconds on average: `await pacer.wait_next()`."""

    def __init__(self, period: float, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._deadline: float | None = None

    def reset(self) -> None:
        """The next `wait_next()` returns at once and restarts the schedule."""
        self._deadline = None

    async def wait_next(self) -> None:
        now = self._clock()
        if self._deadline is None or now - self._deadline > MAX_LAG_S:
            self._deadline = now
            return
        self._deadline += self.period
        delay = self._deadline - now
        if delay > 0:
            await self._sleep(delay)


class PacedSource:
    """A source that makes its chunks itself (file, silence) and hands them out in real time.

    Subclasses implement `_next_chunk()` (exactly `chunk_bytes`) and optionally `_open`/`_close`.
    """

    def __init__(
        self, fmt: AudioFormat, chunk_ms: int, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        if fmt.channels != 1 or fmt.sample_width != 2:
            raise AudioDeviceError(f"sources produce 16-bit mono PCM, not {fmt}")
        self.fmt = fmt
        self.chunk_ms = chunk_ms
        self.chunk_bytes = fmt.bytes_for_ms(chunk_ms)
        self._pacer = Pacer(self.chunk_bytes / fmt.frame_bytes / fmt.sample_rate, clock=clock, sleep=sleep)
        self._open_state = False
        self._muted = False
        self._chunks = self._bytes = self._muted_chunks = 0

    async def __aenter__(self) -> Self:
        self._open()
        self._open_state = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._open_state:
            self._open_state = False
            self._close()

    def mute(self, muted: bool) -> None:
        self._muted = muted

    async def read(self) -> bytes:
        if not self._open_state:
            raise AudioDeviceError(f"{type(self).__name__} is not open (use 'async with')")
        await self._pacer.wait_next()
        if self._muted:
            # A file (or generated) source is not live: muted, it holds its place, so nothing of
            # it is lost while the engine's gate is closed.
            chunk = bytes(self.chunk_bytes)
            self._muted_chunks += 1
        else:
            chunk = self._next_chunk()
        self._chunks += 1
        self._bytes += len(chunk)
        return chunk

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(chunks_read=self._chunks, bytes_read=self._bytes,
                                muted_chunks=self._muted_chunks, dropped_chunks=0)

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _next_chunk(self) -> bytes:
        raise NotImplementedError
