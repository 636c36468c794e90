"""One contract suite over every file/null registry entry (the device entries run in test_pyaudio_devices)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from audio_helpers import SAMPLES, tone

from runner.audio import (
    SINKS,
    SOURCES,
    AudioFormat,
    AudioSink,
    AudioSource,
    SinkSpec,
    SourceSpec,
    make_sink,
    make_source,
)
from runner.errors import AudioDeviceError

F16, F24 = AudioFormat(16000), AudioFormat(24000)


def test_registries() -> None:
    assert sorted(SOURCES) == ["mic", "null", "wav"]
    assert sorted(SINKS) == ["null", "speaker", "wav"]
    with pytest.raises(AudioDeviceError, match="unknown audio source 'tape'; choose from mic, null, wav"):
        make_source("tape", SourceSpec(F16))
    with pytest.raises(AudioDeviceError, match="unknown audio sink 'tape'; choose from null, speaker, wav"):
        make_sink("tape", SinkSpec(F24))
    with pytest.raises(AudioDeviceError, match="--input FILE"):
        make_source("wav", SourceSpec(F16))
    with pytest.raises(AudioDeviceError, match="--output FILE"):
        make_sink("wav", SinkSpec(F24))


@pytest.mark.parametrize("kind", ["wav", "null"])
def test_source_contract(kind: str) -> None:
    source = make_source(kind, SourceSpec(F16, 20, SAMPLES / "thanks_bye.wav" if kind == "wav" else None))
    assert isinstance(source, AudioSource)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        async with source:
            start = loop.time()
            chunks = [await source.read() for _ in range(11)]
            elapsed = loop.time() - start
            source.mute(True)
            assert await source.read() == bytes(640)
        await source.aclose()  # idempotent
        assert all(len(c) == 640 for c in chunks)
        assert source.statistics().chunks_read == 12
        with pytest.raises(AudioDeviceError, match="not open"):
            await source.read()
        return elapsed

    assert 0.19 <= asyncio.run(main()) < 0.4  # 10 periods of 20 ms after the first chunk


@pytest.mark.parametrize("kind", ["wav", "null"])
def test_sink_contract(kind: str, tmp_path: Path) -> None:
    sink = make_sink(kind, SinkSpec(F24, tmp_path / "out.wav" if kind == "wav" else None))
    assert isinstance(sink, AudioSink)

    async def main() -> None:
        async with sink:
            await sink.write(tone(440, 300, 24000))
            assert 260 <= sink.pending_ms() <= 300
            await asyncio.sleep(0.1)
            dropped = sink.flush()
            assert 100 * 48 <= dropped <= 200 * 48
            assert sink.pending_ms() <= 20
            await sink.write(tone(440, 100, 24000))
            assert await sink.wait_drained(1)
            assert sink.pending_ms() == 0
            stats = sink.statistics()
            assert stats.bytes_written == 400 * 48
            assert stats.bytes_played + stats.bytes_dropped == stats.bytes_written
            assert stats.flushes == 1
        await sink.aclose()  # idempotent
        with pytest.raises(AudioDeviceError, match="not open"):
            await sink.write(b"\0\0")

    asyncio.run(main())
