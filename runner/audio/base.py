"""Audio formats and the two interfaces the engine composes: `AudioSource` and `AudioSink`.

Theory of operation
-------------------
The engine never talks to a device. It reads fixed-size chunks of 16-bit mono PCM at the agent's
INPUT rate from an `AudioSource`, and writes the model's PCM at the agent's OUTPUT rate to an
`AudioSink`. Implementations own the rest: resampling from the device or file rate, real-time
pacing, threads, and buffering.

Two rules follow from Nova Sonic's behaviour:

* A source never ends on its own. The service aborts a session whose audio input stops, so after a
  file runs out a source keeps yielding silence, and a muted source yields silence of the same size.
* A sink buffers in memory (bounded, so `write` blocks when full) and plays in small blocks, so that
  `flush()` (barge-in) cuts what is still queued within a block or two. `pending_ms()` tells the
  half-duplex policy how long the assistant will still be heard.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

DEFAULT_CHUNK_MS = 20
DEFAULT_BLOCK_MS = 20


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """Linear PCM: `sample_rate` Hz, interleaved `channels`, `sample_width` bytes per sample."""

    sample_rate: int
    channels: int = 1
    sample_width: int = 2

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.channels <= 0 or self.sample_width <= 0:
            raise ValueError(f"invalid audio format: {self}")

    @property
    def frame_bytes(self) -> int:
        """Bytes in one frame (one sample per channel)."""
        return self.channels * self.sample_width

    @property
    def bytes_per_ms(self) -> float:
        return self.sample_rate * self.frame_bytes / 1000

    def frames_for_ms(self, ms: float) -> int:
        """Whole frames in `ms` milliseconds (rounded down, at least one)."""
        return max(1, int(self.sample_rate * ms / 1000))

    def bytes_for_ms(self, ms: float) -> int:
        """Bytes of `ms` milliseconds of audio, always a whole number of frames."""
        return self.frames_for_ms(ms) * self.frame_bytes

    def duration_ms(self, nbytes: int) -> float:
        """How long `nbytes` of this format plays, in milliseconds."""
        return nbytes / self.bytes_per_ms


@dataclass(frozen=True, slots=True)
class SourceStatistics:
    chunks_read: int
    bytes_read: int
    muted_chunks: int
    # Chunks lost because the consumer fell behind (a device source drops the oldest).
    dropped_chunks: int


@dataclass(frozen=True, slots=True)
class SinkStatistics:
    bytes_written: int
    bytes_played: int
    bytes_dropped: int
    flushes: int
    # Times playback ran out of queued audio while some was expected (a gap the listener hears).
    underruns: int
    pending_ms: float


@runtime_checkable
class AudioSource(Protocol):
    """Real-time PCM input. Use as `async with source:`; `read()` only inside the block."""

    # The agent's input format (16-bit mono); every chunk is exactly `chunk_bytes` long.
    fmt: AudioFormat
    chunk_ms: int

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def aclose(self) -> None:
        """Release the device or file. Idempotent; always releases, even when it fails."""
        ...

    async def read(self) -> bytes:
        """The next chunk, paced in real time (one per `chunk_ms` on average). Never ends."""
        ...

    def mute(self, muted: bool) -> None:
        """While muted, `read()` keeps its pace but returns silence.

        A live source (a microphone) drops what it captures meanwhile; a file source holds its
        place and goes on where it was once unmuted (a recording can wait, a person cannot).
        """
        ...

    def statistics(self) -> SourceStatistics: ...


@runtime_checkable
class AudioSink(Protocol):
    """Real-time PCM output from a bounded buffer. Use as `async with sink:`."""

    # The agent's output format (16-bit mono at the output rate).
    fmt: AudioFormat

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def aclose(self) -> None:
        """Stop playback at once (unplayed audio is dropped) and release. Idempotent."""
        ...

    async def write(self, pcm: bytes) -> None:
        """Queue `pcm` for playback; waits while the buffer is full (backpressure).

        A `flush()` while this waits drops the rest of `pcm` too.
        """
        ...

    def flush(self) -> int:
        """Drop everything queued and not yet handed to the device. Returns the bytes dropped."""
        ...

    def pending_ms(self) -> float:
        """Audio queued or inside the device that has not been heard yet, in milliseconds."""
        ...

    def failure(self) -> str | None:
        """Why the output stopped working (e.g. a full disk), or None while it works.

        A failed sink drops what it is given (`write` raises the same reason) and has nothing
        pending, so the engine can end the run with a clear error instead of waiting on it.
        """
        ...

    # The timeout is a parameter (not the caller's asyncio.timeout) because running out of time is
    # an expected outcome at the end of a session, reported as False rather than raised.
    async def wait_drained(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until everything written has played. False if `timeout` seconds passed first."""
        ...

    def statistics(self) -> SinkStatistics: ...
