"""Microphone and speaker through PyAudio/PortAudio: the only module that imports `pyaudio`.

Threads: PortAudio calls our stream callbacks on its own audio thread. The input callback only
hands the captured bytes to the event loop (`call_soon_threadsafe`); the loop side decides what to
keep. The output callback pulls the next small block from the thread-safe `PlaybackQueue` and plays
silence when it is empty.

Why a callback output stream rather than blocking writes from a worker thread: the device pulls
exactly one block (`block_ms`) per callback, so nothing sits in an intermediate writer queue and a
`flush()` takes effect at the very next callback; only what PortAudio and the sound server already
hold (their output latency) still plays. An empty buffer plays silence instead of an xrun.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, Literal, Self

from runner.audio.base import (
    DEFAULT_BLOCK_MS,
    DEFAULT_CHUNK_MS,
    AudioFormat,
    SinkStatistics,
    SourceStatistics,
)
from runner.audio.playback import DEFAULT_CAPACITY_MS, PlaybackQueue, wait_until_played
from runner.audio.resample import Resampler
from runner.errors import AudioDeviceError

Kind = Literal["input", "output"]

# A microphone that delivers nothing for this long is gone (unplugged, server died).
READ_TIMEOUT_S = 2.0
HEADLESS_HINT = "on a headless machine start PulseAudio with null sinks (see README)"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    is_default_input: bool
    is_default_output: bool


def _import_pyaudio() -> ModuleType:
    try:
        return importlib.import_module("pyaudio")
    except ImportError:
        raise AudioDeviceError(
            "microphone and speaker need PyAudio: pip install 'nova-agent-runner[audio]'") from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hide the ALSA/JACK probing noise PortAudio prints to fd 2 (set AGENT_RUN_AUDIO_DEBUG=1 to see it).

    The C libraries write to the file descriptor, not to `sys.stderr`, so the fd is redirected.
    """
    if os.environ.get("AGENT_RUN_AUDIO_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _open_portaudio() -> Any:
    pyaudio = _import_pyaudio()
    with _quiet_stderr():
        return pyaudio.PyAudio()


def _default_index(pa: Any, kind: Kind) -> int | None:
    try:
        info = pa.get_default_input_device_info() if kind == "input" else pa.get_default_output_device_info()
    except OSError:
        return None
    return int(info["index"])


def _devices(pa: Any) -> list[DeviceInfo]:
    default_in, default_out = _default_index(pa, "input"), _default_index(pa, "output")
    devices = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        devices.append(DeviceInfo(
            index=i,
            name=str(d["name"]),
            host_api=str(pa.get_host_api_info_by_index(d["hostApi"])["name"]),
            max_input_channels=int(d["maxInputChannels"]),
            max_output_channels=int(d["maxOutputChannels"]),
            default_sample_rate=float(d["defaultSampleRate"]),
            is_default_input=i == default_in,
            is_default_output=i == default_out,
        ))
    return devices


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees (an empty list on a machine without sound devices)."""
    pa = _open_portaudio()
    try:
        return _devices(pa)
    finally:
        pa.terminate()


def _channels(d: DeviceInfo, kind: Kind) -> int:
    return d.max_input_channels if kind == "input" else d.max_output_channels


def _describe(devices: list[DeviceInfo], kind: Kind) -> str:
    usable = [d for d in devices if _channels(d, kind) > 0]
    if not usable:
        return f"no {kind} devices found; {HEADLESS_HINT}"
    return f"{kind} devices: " + ", ".join(f"{d.index}: {d.name!r}" for d in usable)


def select_device(devices: list[DeviceInfo], selector: int | str | None, kind: Kind) -> DeviceInfo:
    """The device for `selector`: None = the default, an int (or digit string) = an index, else a
    case-insensitive name substring (an exact name wins over substring matches)."""
    usable = [d for d in devices if _channels(d, kind) > 0]
    if selector is None:
        found = [d for d in usable if (d.is_default_input if kind == "input" else d.is_default_output)]
        if not found:
            raise AudioDeviceError(f"no default {kind} device; {_describe(devices, kind)}")
        return found[0]
    if isinstance(selector, int) or selector.strip().isdigit():
        index = int(selector)
        for d in usable:
            if d.index == index:
                return d
        raise AudioDeviceError(f"no {kind} device with index {index}; {_describe(devices, kind)}")
    wanted = selector.strip().lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    matches = exact or [d for d in usable if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioDeviceError(f"no {kind} device matches {selector!r}; {_describe(devices, kind)}")
    names = ", ".join(f"{d.index}: {d.name!r}" for d in matches)
    raise AudioDeviceError(f"{selector!r} matches several {kind} devices ({names}); use an index")


def _pick_rate(pa: Any, pyaudio: ModuleType, device: DeviceInfo, rate: int, kind: Kind) -> int:
    """`rate` when the device takes it, else its default rate (the caller resamples)."""
    spec: dict[str, Any] = (
        {"input_device": device.index, "input_channels": 1, "input_format": pyaudio.paInt16}
        if kind == "input" else
        {"output_device": device.index, "output_channels": 1, "output_format": pyaudio.paInt16})
    try:
        if pa.is_format_supported(rate, **spec):
            return rate
    except ValueError:
        pass
    return int(device.default_sample_rate)


class _Device:
    """Shared open/close of one PortAudio stream on one device."""

    def __init__(self, device: int | str | None, kind: Kind) -> None:
        self._selector = device
        self._kind = kind
        self._pa: Any = None
        self._stream: Any = None
        self.device: DeviceInfo | None = None
        self.device_rate = 0

    def _open_stream(self, rate: int, frames_per_buffer: int, callback: Any) -> None:
        pyaudio = _import_pyaudio()
        self._pa = _open_portaudio()
        try:
            self.device = select_device(_devices(self._pa), self._selector, self._kind)
            self.device_rate = _pick_rate(self._pa, pyaudio, self.device, rate, self._kind)
            frames = frames_per_buffer * self.device_rate // rate
            where = ({"input": True, "input_device_index": self.device.index} if self._kind == "input"
                     else {"output": True, "output_device_index": self.device.index})
            with _quiet_stderr():
                self._stream = self._pa.open(format=pyaudio.paInt16, channels=1, rate=self.device_rate,
                                             frames_per_buffer=frames, stream_callback=callback, **where)
        except OSError as exc:
            self._terminate()
            raise AudioDeviceError(f"cannot open {self._kind} device {self._selector!r}: {exc}") from None
        except BaseException:
            self._terminate()
            raise

    def _terminate(self) -> None:
        stream, self._stream = self._stream, None
        pa, self._pa = self._pa, None
        try:
            if stream is not None:
                # stop_stream waits for the running callback, so none can fire after this.
                with contextlib.suppress(OSError):
                    stream.stop_stream()
                stream.close()
        finally:
            if pa is not None:
                pa.terminate()


class MicSource(_Device):
    """Microphone input: exactly `chunk_ms` of 16-bit mono PCM at `fmt.sample_rate` per `read()`."""

    def __init__(self, device: int | str | None, fmt: AudioFormat, chunk_ms: int = DEFAULT_CHUNK_MS,
                 *, queue_ms: int = 1000) -> None:
        super().__init__(device, "input")
        self.fmt = fmt
        self.chunk_ms = chunk_ms
        self.chunk_bytes = fmt.bytes_for_ms(chunk_ms)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=max(2, queue_ms // chunk_ms))
        self._resampler = Resampler(fmt.sample_rate, fmt.sample_rate)
        self._pending = bytearray()
        self._muted = False
        self._chunks = self._bytes = self._muted_chunks = self._dropped = 0

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        pyaudio = _import_pyaudio()

        def callback(in_data: bytes | None, frames: int, time_info: Any, status: int) -> tuple[None, int]:
            try:
                loop.call_soon_threadsafe(self._deliver, in_data or b"")
            except RuntimeError:  # the loop is closed: the stream is being torn down
                return None, pyaudio.paComplete
            return None, pyaudio.paContinue

        self._open_stream(self.fmt.sample_rate, self.fmt.frames_for_ms(self.chunk_ms), callback)
        self._resampler = Resampler(self.device_rate, self.fmt.sample_rate)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._terminate()

    def _deliver(self, data: bytes) -> None:
        # On the loop: a consumer that fell behind loses the oldest audio, never blocks capture.
        if self._queue.full():
            self._queue.get_nowait()
            self._dropped += 1
        self._queue.put_nowait(data)

    def mute(self, muted: bool) -> None:
        self._muted = muted

    async def read(self) -> bytes:
        if self._stream is None:
            raise AudioDeviceError("MicSource is not open (use 'async with')")
        while len(self._pending) < self.chunk_bytes:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    data = await self._queue.get()
            except TimeoutError:
                raise AudioDeviceError(
                    f"the microphone delivered no audio for {READ_TIMEOUT_S:.0f} s") from None
            self._pending += self._resampler.process(data)
        chunk = bytes(self._pending[:self.chunk_bytes])
        del self._pending[:self.chunk_bytes]
        if self._muted:
            chunk = bytes(self.chunk_bytes)
            self._muted_chunks += 1
        self._chunks += 1
        self._bytes += len(chunk)
        return chunk

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(chunks_read=self._chunks, bytes_read=self._bytes,
                                muted_chunks=self._muted_chunks, dropped_chunks=self._dropped)


class SpeakerSink(_Device):
    """Speaker output from a bounded buffer, pulled by the device in `block_ms` blocks."""

    def __init__(self, device: int | str | None, fmt: AudioFormat, *, block_ms: int = DEFAULT_BLOCK_MS,
                 capacity_ms: float = DEFAULT_CAPACITY_MS) -> None:
        super().__init__(device, "output")
        self.fmt = fmt
        self.block_ms = block_ms
        self._capacity_ms = capacity_ms
        self._queue: PlaybackQueue | None = None
        self._resampler = Resampler(fmt.sample_rate, fmt.sample_rate)
        self._latency_s = 0.0
        # Written by the audio thread: plain attribute stores are atomic under the GIL.
        self._heard_until = 0.0
        self._played = 0
        self._underruns = 0
        self._starved = True

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        pyaudio = _import_pyaudio()
        self._resampler = Resampler(self.fmt.sample_rate, self.fmt.sample_rate)
        self._queue = queue = PlaybackQueue(self.fmt, self._capacity_ms)

        def callback(in_data: Any, frames: int, time_info: Any, status: int) -> tuple[bytes, int]:
            nbytes = frames * 2
            block = queue.take(nbytes)
            if block:
                self._played += len(block)
                self._heard_until = time.monotonic() + self._latency_s + len(block) / 2 / self.device_rate
                self._starved = False
                if queue.space_wanted:  # a wake-up of the loop only when a write waits for room
                    try:
                        loop.call_soon_threadsafe(queue.space_freed)
                    except RuntimeError:
                        return bytes(nbytes), pyaudio.paComplete
            if len(block) < nbytes:
                self._underruns += not self._starved
                self._starved = True
                block += bytes(nbytes - len(block))
            return block, pyaudio.paContinue

        self._open_stream(self.fmt.sample_rate, self.fmt.frames_for_ms(self.block_ms), callback)
        if self.device_rate != self.fmt.sample_rate:
            # The queue holds device-rate audio, so the callback never resamples.
            self._resampler = Resampler(self.fmt.sample_rate, self.device_rate)
            queue.fmt = AudioFormat(self.device_rate)
            queue.capacity = queue.fmt.bytes_for_ms(self._capacity_ms)
        self._latency_s = float(self._stream.get_output_latency())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._queue is not None:
            self._queue.flush()
        self._terminate()

    def _live_queue(self) -> PlaybackQueue:
        if self._stream is None or self._queue is None:
            raise AudioDeviceError("SpeakerSink is not open (use 'async with')")
        return self._queue

    async def write(self, pcm: bytes) -> None:
        queue = self._live_queue()
        await queue.put(self._resampler.process(pcm))

    def flush(self) -> int:
        dropped = self._live_queue().flush()
        # The resampler's filter still holds a few ms of the old answer: start the next one clean.
        self._resampler = Resampler(self._resampler.in_rate, self._resampler.out_rate)
        return int(dropped * self.fmt.sample_rate / max(1, self.device_rate))

    def pending_ms(self) -> float:
        queued = self._queue.queued_ms() if self._queue is not None else 0.0
        in_device_s = self._heard_until - time.monotonic()
        return queued + in_device_s * 1000 if in_device_s > 0 else queued

    async def wait_drained(self, timeout: float) -> bool:  # noqa: ASYNC109
        self._live_queue()
        return await wait_until_played(self, timeout)

    def failure(self) -> str | None:
        # A device that stops taking audio shows as a stalled write() (AudioDeviceError).
        return None

    def statistics(self) -> SinkStatistics:
        q = self._queue
        ratio = self.fmt.sample_rate / max(1, self.device_rate)
        return SinkStatistics(
            bytes_written=int((q.bytes_written if q is not None else 0) * ratio),
            bytes_played=int(self._played * ratio),
            bytes_dropped=int((q.bytes_dropped if q is not None else 0) * ratio),
            flushes=q.flushes if q is not None else 0,
            underruns=self._underruns,
            pending_ms=self.pending_ms(),
        )
