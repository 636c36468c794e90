"""WAV file as a source (a recorded question, paced like a microphone) and as a sink (a recording
of what the listener would have heard, barge-in cuts included)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import struct
import time
import wave
from pathlib import Path

import numpy as np

from runner.audio.base import DEFAULT_BLOCK_MS, DEFAULT_CHUNK_MS, AudioFormat
from runner.audio.pacing import Clock, PacedSource, Sleep
from runner.audio.playback import DEFAULT_CAPACITY_MS, PacedSink
from runner.audio.resample import Resampler
from runner.errors import AudioDeviceError
from runner.files import MAX_WAV_FILE_BYTES, UnreadableFileError, open_for_writing, read_user_file

_HEADER_BYTES = 44

# What an --input WAV's header may say (documented in the README, "Limits"). Telephone audio is
# 8000 Hz; studio audio at most 384000 Hz. Below 1000 Hz nothing is speech, and resampling from a
# rate near zero multiplies the size by up to 16,000.
MIN_WAV_RATE = 1000
MAX_WAV_RATE = 384_000
MAX_WAV_CHANNELS = 32
_UNKNOWN_LENGTH = 0xFFFF_FFFF


def read_wav(path: str | os.PathLike[str], sample_rate: int) -> bytes:
    """The whole file as 16-bit mono PCM at `sample_rate`: any integer PCM width, channels, rate."""
    try:
        # Through the bounded reader: a FIFO, /dev/zero or a symlink loop must not hang the run.
        data = read_user_file(Path(path), limit=MAX_WAV_FILE_BYTES, what="an input WAV file")
    except UnreadableFileError as exc:
        if exc.reason == "no such file":
            raise AudioDeviceError(f"input file not found: {path}") from None
        raise AudioDeviceError(f"input file {exc}") from None
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            declared = w.getnframes()
            raw = w.readframes(declared)
    except (wave.Error, EOFError) as exc:
        raise AudioDeviceError(f"{path}: not a PCM WAV file ({exc})") from None
    if declared * channels * width > _UNKNOWN_LENGTH - 256:
        # A streaming writer (ffmpeg or sox into a pipe) marks "length unknown" with 0xFFFFFFFF:
        # the audio is whatever follows, in whole frames.
        raw = raw[:len(raw) - len(raw) % (channels * width)]
        declared = len(raw) // (channels * width)
    _check_header(path, channels, width, rate, declared, len(raw))
    mono = _to_int16(raw, width, path).reshape(-1, channels).mean(axis=1).round().astype("<i2")
    resampler = Resampler(rate, sample_rate)
    return resampler.process(mono.tobytes()) + resampler.flush()


def _check_header(path: object, channels: int, width: int, rate: int, frames: int, size: int) -> None:
    """Refuse header values no recording has, before any arithmetic uses them: a zero or 1 Hz rate
    (a division by zero, or a resampling to 16,000 times the size), a data chunk that claims more
    than the file holds (a truncated file, or a made-up size)."""
    if not MIN_WAV_RATE <= rate <= MAX_WAV_RATE:
        raise AudioDeviceError(f"{path}: sample rate {rate} Hz in the header is not an audio rate "
                               f"({MIN_WAV_RATE}-{MAX_WAV_RATE} Hz are accepted)")
    if not 1 <= channels <= MAX_WAV_CHANNELS:
        raise AudioDeviceError(f"{path}: {channels} channels in the header "
                               f"(1-{MAX_WAV_CHANNELS} are accepted)")
    if not 1 <= width <= 4:
        raise AudioDeviceError(f"{path}: unsupported sample width {width * 8} bits")
    if size != frames * channels * width:
        raise AudioDeviceError(f"{path}: the data chunk claims {frames * channels * width} bytes of audio "
                               f"but the file holds {size} (a truncated or damaged file)")


def _to_int16(raw: bytes, width: int, path: object) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8
    if width == 2:
        return np.frombuffer(raw, dtype="<i2")
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        return (b[:, 2].astype(np.int8).astype(np.int16) << 8) | b[:, 1].astype(np.int16)
    if width == 4:
        return (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    raise AudioDeviceError(f"{path}: unsupported sample width {width * 8} bits")


class WavSource(PacedSource):
    """Plays a WAV file as microphone input in real time, then silence forever.

    The file is read, mixed to mono and resampled to `fmt.sample_rate` when the source opens.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: AudioFormat,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        *,
        lead_in_ms: int = 0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(fmt, chunk_ms, clock=clock, sleep=sleep)
        self.path = Path(path)
        # Silence before the speech, as if the user paused before talking.
        self._lead_in = fmt.bytes_for_ms(lead_in_ms) if lead_in_ms else 0
        self._pcm = b""
        self._pos = 0

    @property
    def finished(self) -> bool:
        """True once the whole file has been read (the source now yields silence)."""
        return self._open_state and self._pos >= len(self._pcm)

    def _open(self) -> None:
        self._pcm = bytes(self._lead_in) + read_wav(self.path, self.fmt.sample_rate)
        self._pos = 0

    def _next_chunk(self) -> bytes:
        chunk = self._pcm[self._pos:self._pos + self.chunk_bytes]
        self._pos += self.chunk_bytes
        return chunk + bytes(self.chunk_bytes - len(chunk))


class WavSink(PacedSink):
    """"Plays" in real time into a 16-bit mono WAV file at `fmt.sample_rate`.

    Each block is appended as it plays, and the header's sizes are patched after every block, so the
    file is a valid WAV at all times (a crash loses at most the block being written). Audio dropped by
    `flush()` never reaches the file, exactly as it would never reach a speaker.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: AudioFormat,
        *,
        block_ms: int = DEFAULT_BLOCK_MS,
        capacity_ms: float = DEFAULT_CAPACITY_MS,
        record_gaps: bool = False,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(fmt, block_ms=block_ms, capacity_ms=capacity_ms, record_gaps=record_gaps,
                         clock=clock, sleep=sleep)
        self.path = Path(path)
        self._fd: int | None = None
        self._data_bytes = 0
        self._started = False

    def _open(self) -> None:
        # Opened (so an unwritable path fails before the run starts) but not truncated: an existing
        # file is replaced only when the first block of audio arrives, so a run that fails before
        # the assistant says anything (no stream accepted, an unreachable endpoint) loses nothing.
        try:
            self._fd = open_for_writing(self.path, os.O_WRONLY | os.O_CREAT)
            regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        except OSError as exc:
            self._close()
            raise AudioDeviceError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._data_bytes = 0
        self._started = False
        if not regular:  # a device has nothing to keep: write the header now (/dev/full fails here)
            self._start()

    def _start(self) -> None:
        """Truncate and write the header: the file now belongs to this run."""
        assert self._fd is not None
        self._started = True
        try:
            if stat.S_ISREG(os.fstat(self._fd).st_mode):
                os.ftruncate(self._fd, 0)
                os.lseek(self._fd, 0, os.SEEK_SET)
            _write_all(self._fd, _wav_header(self.fmt, 0))
        except OSError as exc:  # a full disk (or /dev/full) refuses even the header
            self._close()
            raise AudioDeviceError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _play(self, block: bytes) -> None:
        assert self._fd is not None
        if not self._started:
            self._start()
        try:
            _write_all(self._fd, block)
            self._data_bytes += len(block)
            # pwrite leaves the append position alone: patch RIFF and data sizes in place.
            os.pwrite(self._fd, struct.pack("<I", 36 + self._data_bytes), 4)
            os.pwrite(self._fd, struct.pack("<I", self._data_bytes), 40)
        except OSError as exc:
            kept = self._finalise()
            raise AudioDeviceError(f"cannot write {self.path}: {exc.strerror or exc} "
                                   f"({kept})") from None

    def _finalise(self) -> str:
        """After a failed write: cut the file back to whole blocks and make its header say so.

        Both only shrink or overwrite what is there, so they work on a full disk too.
        """
        assert self._fd is not None
        seconds = self._data_bytes / self.fmt.frame_bytes / self.fmt.sample_rate
        try:
            os.ftruncate(self._fd, _HEADER_BYTES + self._data_bytes)
            os.pwrite(self._fd, _wav_header(self.fmt, self._data_bytes), 0)
        except OSError:
            return "the file may be incomplete"
        return f"the file keeps the {seconds:.1f} s written before"

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # No audio came: a file this run created (empty) becomes a valid empty WAV; one that
        # already held something is left exactly as it was.
        with contextlib.suppress(OSError):
            if not self._started and os.fstat(fd).st_size == 0:
                _write_all(fd, _wav_header(self.fmt, 0))
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _wav_header(fmt: AudioFormat, data_bytes: int) -> bytes:
    byte_rate = fmt.sample_rate * fmt.frame_bytes
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, fmt.channels, fmt.sample_rate, byte_rate,
                                fmt.frame_bytes, fmt.sample_width * 8)
        + b"data" + struct.pack("<I", data_bytes)
    )


assert len(_wav_header(AudioFormat(16000), 0)) == _HEADER_BYTES
