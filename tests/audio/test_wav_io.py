from __future__ import annotations

import asyncio
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from audio_helpers import SAMPLES, FakeClock, dominant_frequency, read_wav_raw, tone, write_wav

from runner.audio.base import AudioFormat
from runner.audio.pcm import rms_dbfs
from runner.audio.wav import WavSink, WavSource, read_wav
from runner.errors import AudioDeviceError

F16, F24 = AudioFormat(16000), AudioFormat(24000)


def read_chunks(source: WavSource, n: int) -> list[bytes]:
    async def main() -> list[bytes]:
        async with source:
            return [await source.read() for _ in range(n)]
    return asyncio.run(main())


def test_source_yields_the_file_then_silence_forever(fake_clock: FakeClock) -> None:
    pcm, rate = read_wav_raw(SAMPLES / "what_time_is_it.wav")
    assert rate == 16000
    n_file = -(-len(pcm) // 640)
    chunks = read_chunks(WavSource(SAMPLES / "what_time_is_it.wav", F16, 20, clock=fake_clock,
                                   sleep=fake_clock.sleep), n_file + 50)
    assert all(len(c) == 640 for c in chunks)
    assert b"".join(chunks)[:len(pcm)] == pcm
    assert b"".join(chunks[n_file:]) == bytes(50 * 640)


def test_source_is_paced_against_the_clock_without_drift(fake_clock: FakeClock) -> None:
    async def overshooting_sleep(seconds: float) -> None:
        # Every sleep wakes 3 ms late and each chunk costs 1 ms of work: a sleep-after-work loop would
        # drift by 4 ms per chunk; scheduling against the clock absorbs both.
        await fake_clock.sleep(seconds + 0.003)
        fake_clock.now += 0.001

    source = WavSource(SAMPLES / "thanks_bye.wav", F16, 20, clock=fake_clock, sleep=overshooting_sleep)
    start = fake_clock.now
    read_chunks(source, 501)
    assert fake_clock.now - start == pytest.approx(10.0, abs=0.01)


def test_source_mute_keeps_time_and_its_place_in_the_file(fake_clock: FakeClock) -> None:
    # A recording can wait: muted, the file source sends silence on time and resumes where it was.
    async def main() -> tuple[list[bytes], list[bytes]]:
        async with WavSource(SAMPLES / "where_is_my_order.wav", F16, 20,
                             clock=fake_clock, sleep=fake_clock.sleep) as source:
            source.mute(True)
            muted = [await source.read() for _ in range(100)]
            source.mute(False)
            heard = [await source.read() for _ in range(50)]
            assert source.statistics().muted_chunks == 100
            return muted, heard
    muted, heard = asyncio.run(main())
    assert b"".join(muted) == bytes(64000)
    full, _ = read_wav_raw(SAMPLES / "where_is_my_order.wav")
    assert fake_clock.now - 100.0 == pytest.approx(149 * 0.02, abs=0.01)  # time passed all along
    assert b"".join(heard) == full[:32000]


def test_source_mixes_stereo_and_resamples(tmp_path: Path) -> None:
    left = np.frombuffer(tone(440, 1000, 44100, 0.4), dtype="<i2")
    stereo = np.stack([left, left], axis=1).astype("<i2").tobytes()
    path = write_wav(tmp_path / "stereo.wav", stereo, 44100, channels=2)
    pcm = read_wav(path, 16000)
    assert abs(len(pcm) // 2 - 16000) <= 1
    assert dominant_frequency(pcm, 16000) == pytest.approx(440, abs=2)
    assert rms_dbfs(pcm) == pytest.approx(rms_dbfs(left.tobytes()), abs=0.2)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_source_reads_other_pcm_widths(tmp_path: Path, width: int) -> None:
    x = np.frombuffer(tone(500, 200, 16000, 0.5), dtype="<i2").astype(np.int32)
    if width == 1:
        raw = ((x >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = b"".join(struct.pack("<i", int(v) << 8)[:3] for v in x)
    else:
        raw = (x << 16).astype("<i4").tobytes()
    pcm = read_wav(write_wav(tmp_path / "w.wav", raw, 16000, width=width), 16000)
    assert np.max(np.abs(np.frombuffer(pcm, "<i2").astype(int) - x)) <= (256 if width == 1 else 0)


def test_source_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(AudioDeviceError, match=r"input file not found: .*nope\.wav"):
        read_wav(tmp_path / "nope.wav", 16000)
    (tmp_path / "text.wav").write_text("hello, not audio")
    with pytest.raises(AudioDeviceError, match="not a PCM WAV file"):
        read_wav(tmp_path / "text.wav", 16000)
    # IEEE float WAV (format tag 3): valid WAV, but not integer PCM.
    header = (b"RIFF" + struct.pack("<I", 36 + 8) + b"WAVE" + b"fmt "
              + struct.pack("<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32) + b"data" + struct.pack("<I", 8))
    (tmp_path / "float.wav").write_bytes(header + bytes(8))
    with pytest.raises(AudioDeviceError, match="not a PCM WAV file"):
        read_wav(tmp_path / "float.wav", 16000)
    source = WavSource(tmp_path / "nope.wav", F16)
    with pytest.raises(AudioDeviceError, match="not found"):
        asyncio.run(source.__aenter__())


def test_sink_plays_in_real_time_and_writes_a_valid_wav(tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "out.wav"
    pcm = tone(1000, 1000, 24000)

    async def main() -> None:
        async with WavSink(path, F24, clock=fake_clock, sleep=fake_clock.sleep) as sink:
            start = fake_clock.now
            await sink.write(pcm)
            assert sink.pending_ms() == pytest.approx(1000, abs=21)
            await asyncio.sleep(0.01)
            # Mid-way the file is already a valid WAV holding what has played so far.
            with wave.open(str(path)) as w:
                assert w.getnframes() * 2 == sink.statistics().bytes_played > 0
            assert await sink.wait_drained(5)
            assert fake_clock.now - start == pytest.approx(1.0, abs=0.001)
            stats = sink.statistics()
            assert (stats.bytes_written, stats.bytes_played, stats.bytes_dropped) == (48000, 48000, 0)
            # 20 ms blocks: a flush can cut within one block.
            assert fake_clock.sleeps == pytest.approx([0.02] * 50)

    asyncio.run(main())
    out, rate = read_wav_raw(path)
    assert (out, rate) == (pcm, 24000)


def test_sink_flush_removes_unplayed_audio_from_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"

    async def main() -> int:
        async with WavSink(path, F24) as sink:
            await sink.write(tone(1000, 2000, 24000))
            await asyncio.sleep(0.3)
            dropped = sink.flush()
            assert sink.pending_ms() <= 20
            assert await sink.wait_drained(1)
            return dropped

    dropped = asyncio.run(main())
    out, _ = read_wav_raw(path)
    played_ms = len(out) / 48
    assert 280 <= played_ms <= 400
    assert dropped + len(out) == 96000


def test_sink_backpressure_and_flush_of_a_waiting_write(tmp_path: Path) -> None:
    async def main() -> None:
        async with WavSink(tmp_path / "bp.wav", F24, capacity_ms=100) as sink:
            writer = asyncio.create_task(sink.write(tone(500, 1000, 24000)))
            await asyncio.sleep(0.15)
            assert not writer.done()  # blocked: only 100 ms fit in the buffer
            assert sink.pending_ms() <= 121
            sink.flush()
            await asyncio.wait_for(writer, 0.5)  # the rest of the chunk is dropped, not queued
            stats = sink.statistics()
            # Every byte of the chunk was either played or dropped (by the flush, queued or not yet queued).
            assert stats.bytes_played + stats.bytes_dropped == 48000
            assert stats.bytes_played < 48000 * 0.4
            assert stats.flushes == 1

    asyncio.run(main())


def test_sink_record_gaps_keeps_a_timeline(tmp_path: Path, fake_clock: FakeClock) -> None:
    path = tmp_path / "timeline.wav"

    async def main() -> None:
        async with WavSink(path, F24, record_gaps=True, clock=fake_clock, sleep=fake_clock.sleep) as sink:
            await sink.write(tone(1000, 100, 24000))
            # The fake clock only moves as the sink plays: let it play half a second of "session".
            while fake_clock.now < 100.5:  # noqa: ASYNC110
                await asyncio.sleep(0)

    asyncio.run(main())
    out, _ = read_wav_raw(path)
    assert len(out) >= 48 * 500
    assert rms_dbfs(out[:48 * 100]) > -12
    assert rms_dbfs(out[48 * 120:]) == -120


def test_sink_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioDeviceError, match="cannot write"):
        asyncio.run(WavSink(tmp_path / "no" / "dir.wav", F24).__aenter__())
    with pytest.raises(AudioDeviceError, match="not open"):
        asyncio.run(WavSink(tmp_path / "x.wav", F24).write(b"\0\0"))


def test_sink_replaces_an_existing_file_only_when_audio_arrives(tmp_path: Path) -> None:
    # Issue 13: a run that fails before the assistant speaks must not empty an earlier output.
    kept, replaced, new = tmp_path / "kept.wav", tmp_path / "replaced.wav", tmp_path / "new.wav"
    for path in (kept, replaced):
        write_wav(path, tone(440, 500, 24000), 24000)
    earlier = kept.read_bytes()

    async def main() -> None:
        async with WavSink(kept, F24), WavSink(new, F24):
            pass  # no audio: the run ended (or failed) before the assistant said anything
        async with WavSink(replaced, F24) as sink:
            await sink.write(tone(1000, 100, 24000))
            assert await sink.wait_drained(2)

    asyncio.run(main())
    assert kept.read_bytes() == earlier
    assert read_wav_raw(new) == (b"", 24000)  # a file the run created is a valid empty WAV
    assert read_wav_raw(replaced) == (tone(1000, 100, 24000), 24000)
