"""The playback buffer every sink uses, and the base class of sinks that play in simulated real time.

Theory of operation
-------------------
`PlaybackQueue` is a bounded FIFO of PCM bytes sized in milliseconds. The engine's `write()` waits
while it is full (backpressure); the consumer (a loop task, or PortAudio's callback thread) takes
small blocks from it. `flush()` empties it at once and bumps a generation counter, so a `write()`
that was waiting for space drops the rest of its chunk instead of refilling the buffer after a
barge-in. The byte store is guarded by a `threading.Lock` because a device consumer runs on an
audio thread; the lock is held only to copy bytes, never across a wait.

`PacedSink` consumes the queue in `block_ms` blocks on a clock, as a sound card would, and hands each
block to `_play()`. A block counts as "in the device" until its playing time is over, so
`pending_ms()` is what the listener has not heard yet. When `_play()` fails (a full disk), the sink
stops: what is queued is dropped, `failure()` says why, and `write()` raises it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType
from typing import Protocol, Self

from runner.audio.base import DEFAULT_BLOCK_MS, AudioFormat, SinkStatistics
from runner.audio.pacing import MAX_LAG_S, Clock, Sleep
from runner.errors import AudioDeviceError

DEFAULT_CAPACITY_MS = 30_000
# A consumer that frees no space for this long is broken (a stuck device), not slow.
STALL_TIMEOUT_S = 5.0


class PlaybackQueue:
    """Bounded PCM FIFO: async `put` on the loop, thread-safe `take` for one consumer anywhere."""

    def __init__(self, fmt: AudioFormat, capacity_ms: float = DEFAULT_CAPACITY_MS) -> None:
        self.fmt = fmt
        self.capacity = fmt.bytes_for_ms(capacity_ms)
        self._bytes_per_ms = fmt.bytes_per_ms
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._generation = 0
        self._space = asyncio.Event()
        self._data = asyncio.Event()
        # Set (under the lock) when a put found no room and is about to wait, so a consumer wakes
        # the loop (space_freed) only then, not after every block it takes.
        self._space_wanted = False
        self.bytes_written = 0
        self.bytes_dropped = 0
        self.flushes = 0

    @property
    def queued_bytes(self) -> int:
        return len(self._buf)

    def queued_ms(self) -> float:
        # Asked before every microphone chunk (the mic gate asks whether the assistant is
        # speaking), so without the property chain of fmt.duration_ms.
        return len(self._buf) / self._bytes_per_ms

    async def put(self, pcm: bytes) -> None:
        """Append `pcm` (whole frames), waiting for space; a flush meanwhile drops the remainder."""
        generation = self._generation
        view = memoryview(pcm)[: len(pcm) - len(pcm) % self.fmt.frame_bytes]
        while view:
            if generation != self._generation:
                self.bytes_dropped += len(view)
                return
            with self._lock:
                n = min(len(view), self.capacity - len(self._buf))
                n -= n % self.fmt.frame_bytes
                self._buf += view[:n]
                self._space_wanted = not n
            if n:
                self.bytes_written += n
                view = view[n:]
                self._data.set()
                continue
            self._space.clear()
            try:
                async with asyncio.timeout(STALL_TIMEOUT_S):
                    await self._space.wait()
            except TimeoutError:
                raise AudioDeviceError(
                    f"audio output stalled: no audio played for {STALL_TIMEOUT_S:.0f} s") from None
            finally:
                self._space_wanted = False

    @property
    def space_wanted(self) -> bool:
        """A `put` is waiting for room: after a `take`, get `space_freed()` called on the loop.

        Read after `take` returned, this cannot miss a waiting `put`: a `put` that looked for room
        after the take found it, and one that looked before had set this under the same lock.
        """
        return self._space_wanted

    def take(self, nbytes: int) -> bytes:
        """Remove and return up to `nbytes` (whole frames). Safe from any thread; never blocks long.

        If `space_wanted`, the caller must then get `space_freed()` called on the event loop.
        """
        with self._lock:
            n = min(nbytes, len(self._buf))
            block = bytes(self._buf[:n])
            del self._buf[:n]
        return block

    def space_freed(self) -> None:
        """Wake a `put` waiting for space. Loop thread only."""
        self._space.set()

    def flush(self) -> int:
        """Drop everything queued now, and the rest of any `put` in progress. Returns bytes dropped."""
        with self._lock:
            dropped = len(self._buf)
            self._buf.clear()
        self._generation += 1
        self.flushes += 1
        self.bytes_dropped += dropped
        self._space.set()
        return dropped

    async def wait_data(self) -> None:
        """Wait until something is queued. Loop thread only."""
        while not self._buf:
            self._data.clear()
            await self._data.wait()


class HasPending(Protocol):
    def pending_ms(self) -> float: ...


async def wait_until_played(sink: HasPending, timeout: float, poll_s: float = 0.05) -> bool:  # noqa: ASYNC109
    """Poll `sink.pending_ms()` down to zero; False when `timeout` seconds pass first."""
    try:
        async with asyncio.timeout(timeout):
            # Polling, because audio inside a device drains with time and no event marks the end.
            # Pending audio cannot end sooner than it plays, so the last sleep ends on time; the
            # cap only bounds how late a flush during the wait is noticed.
            while (pending := sink.pending_ms()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(min(pending / 1000, poll_s))
    except TimeoutError:
        return False
    return True


class PacedSink:
    """A sink that plays on a clock, block by block; subclasses decide what "playing" a block does."""

    def __init__(
        self,
        fmt: AudioFormat,
        *,
        block_ms: int = DEFAULT_BLOCK_MS,
        capacity_ms: float = DEFAULT_CAPACITY_MS,
        record_gaps: bool = False,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if fmt.channels != 1 or fmt.sample_width != 2:
            raise AudioDeviceError(f"sinks take 16-bit mono PCM, not {fmt}")
        self.fmt = fmt
        self.block_bytes = fmt.bytes_for_ms(block_ms)
        self._capacity_ms = capacity_ms
        # With record_gaps the sink "plays" silence while it has nothing, so its output is a
        # timeline of the session (gaps included); without, only the assistant's audio is kept.
        self._record_gaps = record_gaps
        self._clock = clock
        self._sleep = sleep
        self._queue: PlaybackQueue | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_device_until = 0.0
        self._played = 0
        self._underruns = 0
        self._failure: str | None = None

    async def __aenter__(self) -> Self:
        self._open()
        self._queue = PlaybackQueue(self.fmt, self._capacity_ms)
        self._task = asyncio.create_task(self._run(self._queue), name=f"{type(self).__name__}.playback")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        try:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Our own cancel; re-raise only if *we* are being cancelled too.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        finally:
            self._close()

    async def write(self, pcm: bytes) -> None:
        await self._live_queue().put(pcm)

    def flush(self) -> int:
        return self._live_queue().flush()

    def pending_ms(self) -> float:
        queued = self._queue.queued_ms() if self._queue is not None else 0.0
        in_device_s = self._in_device_until - self._clock()
        return queued + in_device_s * 1000 if in_device_s > 0 else queued

    def failure(self) -> str | None:
        return self._failure

    async def wait_drained(self, timeout: float) -> bool:  # noqa: ASYNC109
        self._live_queue()
        return await wait_until_played(self, timeout)

    def statistics(self) -> SinkStatistics:
        q = self._queue
        return SinkStatistics(
            bytes_written=q.bytes_written if q is not None else 0,
            bytes_played=self._played,
            bytes_dropped=q.bytes_dropped if q is not None else 0,
            flushes=q.flushes if q is not None else 0,
            underruns=self._underruns,
            pending_ms=self.pending_ms(),
        )

    def _live_queue(self) -> PlaybackQueue:
        task, queue = self._task, self._queue
        if task is None or queue is None:
            raise AudioDeviceError(f"{type(self).__name__} is not open (use 'async with')")
        if self._failure is not None:
            raise AudioDeviceError(self._failure)
        if task.done():
            exc = task.exception()
            raise AudioDeviceError(f"{type(self).__name__} playback failed: {exc}") from exc
        return queue

    async def _run(self, queue: PlaybackQueue) -> None:
        deadline = self._clock()
        playing = False
        while True:
            block = queue.take(self.block_bytes)
            if block:
                if queue.space_wanted:
                    queue.space_freed()
            elif self._record_gaps:
                block = bytes(self.block_bytes)
            if not block:
                # Nothing to play: idle until the engine writes, then start on time.
                self._underruns += playing
                playing = False
                await queue.wait_data()
                deadline = self._clock()
                continue
            playing = True
            if self._record_gaps and len(block) < self.block_bytes:
                block += bytes(self.block_bytes - len(block))
            try:
                self._play(block)
            except Exception as exc:  # the output is gone: stop playing, keep the reason
                self._failure = str(exc) or type(exc).__name__
                queue.flush()
                self._in_device_until = 0.0
                return
            self._played += len(block)
            deadline += len(block) / self.fmt.frame_bytes / self.fmt.sample_rate
            self._in_device_until = deadline
            delay = deadline - self._clock()
            if delay > 0:
                await self._sleep(delay)
            elif delay < -MAX_LAG_S:
                deadline = self._clock()

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _play(self, block: bytes) -> None:
        raise NotImplementedError
