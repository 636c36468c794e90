"""A sink whose output fails (a full disk) stops cleanly: the reason is kept, nothing stays pending,
the next write raises it, and a WAV file is cut back to whole blocks with a matching header."""

from __future__ import annotations

import asyncio
import errno
import os
import wave
from pathlib import Path

import pytest

from runner.audio.base import AudioFormat
from runner.audio.playback import PacedSink
from runner.audio.wav import WavSink
from runner.errors import AudioDeviceError

F24 = AudioFormat(24000)


def test_a_wav_sink_on_a_full_device_fails_when_it_opens() -> None:
    async def main() -> None:
        async with WavSink("/dev/full", F24):
            pass

    with pytest.raises(AudioDeviceError, match="cannot write /dev/full: No space left on device"):
        asyncio.run(main())


def test_a_sink_that_fails_mid_run_stops_and_keeps_a_valid_file(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.wav"
    block = F24.bytes_for_ms(20)
    room = 44 + 5 * block + block // 2  # the disk fills up half way through the sixth block
    real_write = os.write

    def disk_write(fd: int, data: bytes | memoryview) -> int:
        if os.fstat(fd).st_ino != path.stat().st_ino:
            return real_write(fd, data)
        free = room - os.fstat(fd).st_size
        if free <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:free]))

    monkeypatch.setattr(os, "write", disk_write)

    async def main() -> tuple[str | None, float]:
        async with WavSink(path, F24, block_ms=20) as sink:
            await sink.write(bytes(20 * block))
            for _ in range(200):
                if sink.failure() is not None:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(AudioDeviceError, match="No space left on device"):
                await sink.write(bytes(block))
            return sink.failure(), sink.pending_ms()

    failure, pending = asyncio.run(main())
    assert failure is not None and "the file keeps the 0.1 s written before" in failure, failure
    assert pending == 0
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() * 2 == 5 * block
    assert path.stat().st_size == 44 + 5 * block  # the half block was cut off


def test_a_failing_play_in_any_paced_sink_is_kept_as_its_failure() -> None:
    class Broken(PacedSink):
        def _play(self, block: bytes) -> None:
            raise OSError(errno.EIO, "Input/output error")

    async def main() -> str | None:
        async with Broken(F24) as sink:
            await sink.write(bytes(F24.bytes_for_ms(100)))
            await asyncio.sleep(0.05)
            return sink.failure()

    assert asyncio.run(main()) == "[Errno 5] Input/output error"
