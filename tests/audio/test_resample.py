from __future__ import annotations

import numpy as np
import pytest
from audio_helpers import dominant_frequency, tone

from runner.audio.resample import Resampler


def test_identity_when_rates_match() -> None:
    r = Resampler(16000, 16000)
    assert r.identity
    pcm = tone(440, 100, 16000)
    assert r.process(pcm) is pcm
    assert r.flush() == b""


@pytest.mark.parametrize(("in_rate", "out_rate", "chunk_bytes"), [
    (24000, 16000, 960),     # model output rate -> a 16 kHz device
    (16000, 24000, 640),
    (44100, 16000, 1764),    # a device's default rate -> the agent's input rate
    (16000, 44100, 333),     # odd byte counts: the odd byte is carried to the next chunk
])
def test_length_accounting_over_many_chunks(in_rate: int, out_rate: int, chunk_bytes: int) -> None:
    pcm = tone(300, 10_000, in_rate)
    r = Resampler(in_rate, out_rate)
    total = sum(len(r.process(pcm[i:i + chunk_bytes])) for i in range(0, len(pcm), chunk_bytes))
    total += len(r.flush())
    assert total % 2 == 0
    expected = len(pcm) // 2 * out_rate / in_rate
    assert abs(total // 2 - expected) <= 1


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 16000), (16000, 24000), (44100, 16000)])
def test_tone_frequency_preserved(in_rate: int, out_rate: int) -> None:
    r = Resampler(in_rate, out_rate)
    pcm = tone(1000, 1000, in_rate)
    out = b"".join(r.process(pcm[i:i + 640]) for i in range(0, len(pcm), 640)) + r.flush()
    assert dominant_frequency(out, out_rate) == pytest.approx(1000, abs=2)
    # Streaming leaves no clicks at chunk edges: the level stays that of the input.
    x = np.frombuffer(out, dtype="<i2")[out_rate // 10: -out_rate // 10].astype(float)
    assert np.max(np.abs(x)) == pytest.approx(0.5 * 32767, rel=0.02)


def test_downsampling_filters_above_nyquist() -> None:
    # 10 kHz cannot exist at 16 kHz; an anti-aliased resampler removes it instead of folding it to 6 kHz.
    r = Resampler(24000, 16000)
    out = np.frombuffer(r.process(tone(10_000, 500, 24000)) + r.flush(), dtype="<i2")
    # Ignore the edges, where the tone's abrupt start and end are broadband clicks.
    assert float(np.max(np.abs(out[1600:-1600]))) < 50
