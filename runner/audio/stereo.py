"""A conversation as one stereo WAV: the user on the left, the assistant on the right.

The two sides arrive as separate streams of chunks with their arrival times: the user's audio is
paced in real time by its source, the assistant's arrives in bursts faster than real time. Each
side is laid on a common timeline (`StereoTimeline`, sans-IO): a chunk goes where the previous one
of its side ended, unless it arrives later than that by more than `slack_s`, in which case it starts
at its arrival time (a gap of silence). So the user's stream stays seamless despite scheduling
jitter, and the assistant's burst plays out as the speaker would have played it. A barge-in cuts
the assistant's side at the moment it happened (what was still queued was never heard).

Frames before "now" can no longer change; `take(until_s)` hands them over for writing, so memory
holds only the audio still ahead of the clock. `GrowingWavFile` appends them to a 16-bit WAV whose
header is patched after every write, so the file is valid at all times (also used for mono).
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import numpy as np

from runner.files import open_for_writing

USER, ASSISTANT = 0, 1
_HEADER_BYTES = 44


class StereoTimeline:
    """Places int16 mono chunks of two channels at times (seconds) on one `rate` Hz timeline."""

    def __init__(self, rate: int, *, slack_s: float = 0.1) -> None:
        self.rate = rate
        self._slack = round(slack_s * rate)
        self._written = 0  # frames already taken: everything before is final
        self._pending = (bytearray(), bytearray())  # per channel, from frame `_written` on

    @property
    def frames_taken(self) -> int:
        return self._written

    def end_s(self, channel: int) -> float:
        """Where the channel's audio ends (seconds)."""
        return self._end(channel) / self.rate

    def add(self, channel: int, at_s: float, pcm: bytes) -> None:
        """Append `pcm` to `channel`: right after its previous audio, or at `at_s` after a gap."""
        buf = self._pending[channel]
        end = self._end(channel)
        frame = round(at_s * self.rate)
        if frame - end > self._slack:
            buf.extend(bytes(2 * (frame - end)))
        buf.extend(pcm[:len(pcm) - len(pcm) % 2])

    def cut(self, channel: int, at_s: float) -> None:
        """Drop the channel's audio after `at_s` (never what was already taken)."""
        keep = max(round(at_s * self.rate) - self._written, 0)
        del self._pending[channel][2 * keep:]

    def take(self, until_s: float | None = None) -> bytes:
        """Interleaved stereo frames from the last take up to `until_s` (None: everything)."""
        if until_s is None:
            count = max(len(b) for b in self._pending) // 2
        else:
            count = max(round(until_s * self.rate) - self._written, 0)
        if count == 0:
            return b""
        frames = np.zeros((count, 2), dtype="<i2")
        for channel, buf in enumerate(self._pending):
            n = min(len(buf) // 2, count)
            frames[:n, channel] = np.frombuffer(bytes(buf[:2 * n]), dtype="<i2")
            del buf[:2 * n]
        self._written += count
        return frames.tobytes()

    def _end(self, channel: int) -> int:
        return self._written + len(self._pending[channel]) // 2


class GrowingWavFile:
    """A 16-bit WAV (stereo unless told) written as it grows; its header always matches what was written.

    `append` raises OSError (a full disk); the file is then cut back to whole frames with a header
    that says so (both only shrink or overwrite, so that works on a full disk too) and is closed.
    """

    def __init__(self, path: Path, rate: int, *, channels: int = 2) -> None:
        self.path = path
        self.rate = rate
        self.channels = channels
        self._fd: int | None = open_for_writing(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self._data_bytes = 0
        try:
            _write_all(self._fd, _header(rate, 0, channels))
        except OSError:
            self.close()
            raise

    @property
    def seconds(self) -> float:
        return self._data_bytes / (2 * self.channels) / self.rate

    def append(self, frames: bytes) -> None:
        if self._fd is None or not frames:
            return
        try:
            _write_all(self._fd, frames)
            self._data_bytes += len(frames)
            os.pwrite(self._fd, struct.pack("<I", 36 + self._data_bytes), 4)
            os.pwrite(self._fd, struct.pack("<I", self._data_bytes), 40)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, _HEADER_BYTES + self._data_bytes)
                os.pwrite(self._fd, _header(self.rate, self._data_bytes, self.channels), 0)
            self.close()
            raise

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _header(rate: int, data_bytes: int, channels: int) -> bytes:
    frame = 2 * channels
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * frame, frame, 16)
            + b"data" + struct.pack("<I", data_bytes))
