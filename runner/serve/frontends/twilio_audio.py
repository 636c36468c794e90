"""The caller's audio over Twilio Media Streams as an AudioSource, the assistant's as an AudioSink.

Theory of operation
-------------------
The telephone side is 8 kHz: the protocol decodes μ-law to 8 kHz PCM and encodes 8 kHz PCM back.
The agent's rates are whatever it declares; when they are not 8000 a streaming soxr resampler
(runner.audio.resample, anti-aliased) converts in each direction, so no aliasing reaches the model
or the caller.

`TwilioSource` is a jitter buffer: Twilio's media frames arrive every 20 ms and `read()` hands out
chunks of the agent's size as they fill, following Twilio's clock. When Twilio sends nothing (a
stall, or after the caller hung up) `read()` yields silence on time, since a source never ends.
A bounded buffer drops the oldest audio when the conversation falls behind (the source is live).

`TwilioSink` keeps a bounded PlaybackQueue and a sender task that sends 20 ms blocks to Twilio at
most `lead_ms` ahead of real time. Twilio plays what it is sent, so the listener's clock is
ours: `pending_ms()` is what is queued plus what was sent and has not had time to play. Sending
only a little ahead keeps a barge-in short: `flush()` drops the queue and sends `clear`, which
drops what Twilio holds. After each burst of speech (and every `MARK_EVERY_MS` within one) a mark
follows, so the protocol learns what the caller actually heard.

What the caller has played is what Twilio's marks confirm (runner.serve.playout): the sink's
`bytes_played` is that, not what was sent, so the turn meter's "first sample played" is when Twilio
said so. For it, a burst's first mark follows its first μ-law frame (20 ms), not a second later.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Protocol, Self

from runner.audio.base import AudioFormat, SinkStatistics, SourceStatistics
from runner.audio.playback import DEFAULT_CAPACITY_MS, PlaybackQueue, wait_until_played
from runner.audio.resample import Resampler
from runner.errors import AudioDeviceError
from runner.serve.frontends.twilio_protocol import FRAME_BYTES_PCM, FRAME_MS, SAMPLE_RATE
from runner.serve.playout import PlayoutLedger

TELEPHONE = AudioFormat(SAMPLE_RATE)
# How far ahead of the listener audio is sent: enough to ride out network jitter, short enough that
# a clear has little to drop.
LEAD_MS = 200
MARK_EVERY_MS = 1000
SOURCE_BUFFER_MS = 2000
# Twilio sends every 20 ms; a chunk not filled this long after it was due is silence (a stall).
SOURCE_GRACE_MS = 60


class MediaLink(Protocol):
    """What the sink needs of the connection (the front end's adapter implements it)."""

    def send_audio(self, pcm8k: bytes, *, mark: bool) -> tuple[int, str | None]:
        """Send audio (whole 20 ms frames; `mark`: the tail too, padded, then a mark): the μ-law
        bytes sent, and with `mark` the name of the mark now after them (None: none was sent)."""
        ...

    def send_mark(self) -> str | None:
        """A mark after the audio sent so far; its name (None: the call can take no more)."""
        ...

    def clear(self) -> None: ...


class TwilioSource:
    """Caller audio fed by the WebSocket adapter (`feed`), read by the conversation."""

    def __init__(self, fmt: AudioFormat, chunk_ms: int, *, buffer_ms: int = SOURCE_BUFFER_MS) -> None:
        if fmt.channels != 1 or fmt.sample_width != 2:
            raise AudioDeviceError(f"sources produce 16-bit mono PCM, not {fmt}")
        self.fmt = fmt
        self.chunk_ms = chunk_ms
        self.chunk_bytes = fmt.bytes_for_ms(chunk_ms)
        self._capacity = fmt.bytes_for_ms(buffer_ms)
        self._resampler = Resampler(SAMPLE_RATE, fmt.sample_rate)
        self._buf = bytearray()
        self._data = asyncio.Event()
        self._open = False
        self._muted = False
        self._chunks = self._bytes = self._muted_chunks = self._dropped = 0

    async def __aenter__(self) -> Self:
        self._open = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._open = False
        self._buf.clear()

    def feed(self, pcm8k: bytes) -> None:
        """Caller audio from Twilio (8 kHz PCM). Loop thread only; never blocks."""
        self._buf += self._resampler.process(pcm8k)
        excess = len(self._buf) - self._capacity
        if excess > 0:  # the conversation fell behind: a live caller's oldest audio goes
            excess += -excess % self.chunk_bytes
            del self._buf[:excess]
            self._dropped += excess // self.chunk_bytes
        if len(self._buf) >= self.chunk_bytes:
            self._data.set()

    async def read(self) -> bytes:
        if not self._open:
            raise AudioDeviceError("TwilioSource is not open (use 'async with')")
        if len(self._buf) < self.chunk_bytes:
            self._data.clear()
            try:
                async with asyncio.timeout((self.chunk_ms + SOURCE_GRACE_MS) / 1000):
                    await self._data.wait()
            except TimeoutError:
                pass
        if len(self._buf) >= self.chunk_bytes:
            chunk = bytes(self._buf[:self.chunk_bytes])
            del self._buf[:self.chunk_bytes]
        else:
            chunk = bytes(self.chunk_bytes)  # nothing came in time: silence, on time
        self._chunks += 1
        self._bytes += len(chunk)
        if self._muted:
            self._muted_chunks += 1
            return bytes(self.chunk_bytes)  # live: what the caller says meanwhile is dropped
        return chunk

    def mute(self, muted: bool) -> None:
        self._muted = muted

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(chunks_read=self._chunks, bytes_read=self._bytes,
                                muted_chunks=self._muted_chunks, dropped_chunks=self._dropped)


class TwilioSink:
    """Assistant audio to the caller through a MediaLink (see the module docstring)."""

    def __init__(self, fmt: AudioFormat, link: MediaLink, *, lead_ms: int = LEAD_MS,
                 capacity_ms: float = DEFAULT_CAPACITY_MS, mark_every_ms: int = MARK_EVERY_MS) -> None:
        if fmt.channels != 1 or fmt.sample_width != 2:
            raise AudioDeviceError(f"sinks take 16-bit mono PCM, not {fmt}")
        self.fmt = fmt
        self._link = link
        self._lead_s = lead_ms / 1000
        self._capacity_ms = capacity_ms
        self._mark_every_ms = mark_every_ms
        self._block_bytes = fmt.bytes_for_ms(FRAME_MS)
        self._resampler = Resampler(fmt.sample_rate, SAMPLE_RATE)
        self._queue: PlaybackQueue | None = None
        self._task: asyncio.Task[None] | None = None
        self._heard_until = 0.0  # monotonic time when everything sent so far has played
        self.playout = PlayoutLedger()  # in bytes of `fmt`: sent, and confirmed played by marks
        # Bytes of `fmt` per μ-law byte sent (one 8 kHz sample): where a mark falls in `fmt`.
        self._per_ulaw = fmt.frame_bytes * fmt.sample_rate / SAMPLE_RATE
        self._burst_from = 0  # playout.sent where the burst now playing began
        self._burst_ulaw = 0  # μ-law bytes sent in it
        self._first_marked = False  # the mark after its first frame went out
        self._burst_pcm8k = 0  # 8 kHz PCM bytes handed to the link in it
        self._underruns = 0

    async def __aenter__(self) -> Self:
        self._queue = PlaybackQueue(self.fmt, self._capacity_ms)
        self._task = asyncio.create_task(self._run(self._queue), name="TwilioSink.sender")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def write(self, pcm: bytes) -> None:
        await self._live_queue().put(pcm)

    def flush(self) -> int:
        dropped = self._live_queue().flush()
        self._resampler = Resampler(self.fmt.sample_rate, SAMPLE_RATE)  # no tail of the cut audio
        self._heard_until = 0.0
        self._link.clear()
        self.playout.cleared()
        self._new_burst()  # what comes next starts a burst: its first frame gets its own mark
        return dropped

    def pending_ms(self) -> float:
        queued = self._queue.queued_ms() if self._queue is not None else 0.0
        return queued + max(0.0, (self._heard_until - time.monotonic()) * 1000)

    def failure(self) -> str | None:
        return None

    async def wait_drained(self, timeout: float) -> bool:  # noqa: ASYNC109
        self._live_queue()
        return await wait_until_played(self, timeout)

    def statistics(self) -> SinkStatistics:
        q = self._queue
        return SinkStatistics(
            bytes_written=q.bytes_written if q is not None else 0, bytes_played=self.playout.played,
            bytes_dropped=q.bytes_dropped if q is not None else 0, flushes=q.flushes if q is not None else 0,
            underruns=self._underruns, pending_ms=self.pending_ms())

    def _live_queue(self) -> PlaybackQueue:
        task, queue = self._task, self._queue
        if task is None or queue is None:
            raise AudioDeviceError("TwilioSink is not open (use 'async with')")
        if task.done():
            exc = task.exception()
            raise AudioDeviceError(f"sending audio to the caller failed: {exc}") from exc
        return queue

    def mark_reached(self, name: str) -> None:
        """Twilio echoed mark `name` (as played, not cut by a clear)."""
        self.playout.reached(name)

    def _new_burst(self) -> None:
        self._burst_from, self._burst_ulaw, self._first_marked = self.playout.sent, 0, False
        self._burst_pcm8k = 0

    def _send(self, pcm8k: bytes) -> None:
        if pcm8k:
            ulaw, _ = self._link.send_audio(pcm8k, mark=False)
            self._burst_ulaw += ulaw

    def _mark(self) -> None:
        """A mark where the μ-law sent so far ends (the protocol holds back a partial frame)."""
        name = self._link.send_mark()
        if name is not None:
            self.playout.mark(name, self._burst_from + int(self._burst_ulaw * self._per_ulaw))
        self._first_marked = True

    async def _run(self, queue: PlaybackQueue) -> None:
        since_mark_ms = 0.0
        while True:
            block = queue.take(self._block_bytes)
            if not block:
                if since_mark_ms > 0:  # a burst ended: its tail, then a mark after it
                    _, name = self._link.send_audio(self._resampler.flush(), mark=True)
                    if name is not None:
                        self.playout.mark(name)
                    self._resampler = Resampler(self.fmt.sample_rate, SAMPLE_RATE)
                    since_mark_ms = 0.0
                await queue.wait_data()
                self._new_burst()
                continue
            queue.space_freed()
            pcm8k = self._resampler.process(block)
            self.playout.add(len(block))
            if not self._first_marked:
                # The burst's first frame, then a mark: Twilio's echo of it says when the answer
                # began to play (the resampler may release several frames at once).
                first = max(0, FRAME_BYTES_PCM - self._burst_pcm8k)
                self._burst_pcm8k += len(pcm8k)
                if self._burst_pcm8k >= FRAME_BYTES_PCM:
                    self._send(pcm8k[:first])
                    self._mark()
                    pcm8k = pcm8k[first:]
                    since_mark_ms = 1e-9  # still inside a burst: its end gets a mark too
            self._send(pcm8k)
            block_ms = self.fmt.duration_ms(len(block))
            since_mark_ms += block_ms
            if since_mark_ms >= self._mark_every_ms:
                self._mark()
                since_mark_ms = 1e-9
            now = time.monotonic()
            self._heard_until = max(self._heard_until, now) + block_ms / 1000
            ahead = self._heard_until - now - self._lead_s
            if ahead > 0:
                await asyncio.sleep(ahead)
