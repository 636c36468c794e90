"""Energy VAD on generated tones/silence and on real espeak-ng speech."""

from __future__ import annotations

import numpy as np
import pytest

from runner.emulator import speech
from runner.emulator.vad import SILENCE_DBFS, EnergyVad, SpeechEnded, SpeechStarted, VadSettings, frame_dbfs
from tests.emulator.fakes import chunks, silence, tone


def feed_all(vad: EnergyVad, pcm: bytes, ms: int = 32) -> list[object]:
    events: list[object] = []
    for piece in chunks(pcm, vad.sample_rate, ms):
        events += vad.feed(piece)
    return events


def test_levels() -> None:
    assert frame_dbfs(np.zeros(320, dtype=np.int16)) == SILENCE_DBFS
    full = np.frombuffer(tone(0.02, dbfs=-6.0), dtype="<i2")
    assert frame_dbfs(full) == pytest.approx(-6.0, abs=0.3)


def test_tone_between_silences() -> None:
    vad = EnergyVad(16000)
    events = feed_all(vad, silence(0.5) + tone(1.0) + silence(1.0))
    assert events == [SpeechStarted(at_s=pytest.approx(0.5)),
                      SpeechEnded(start_s=pytest.approx(0.5), end_s=pytest.approx(1.5))]
    assert events[1].duration_s == pytest.approx(1.0)  # type: ignore[attr-defined]


def test_chunking_does_not_matter() -> None:
    pcm = silence(0.3) + tone(0.7) + silence(0.9)
    assert feed_all(EnergyVad(16000), pcm, ms=7) == feed_all(EnergyVad(16000), pcm, ms=64)


def test_short_click_and_quiet_noise_are_not_speech() -> None:
    vad = EnergyVad(16000)
    assert feed_all(vad, tone(0.04) + silence(0.5) + tone(1.0, dbfs=-55) + silence(1.0)) == []
    assert not vad.in_speech


def test_short_pause_does_not_end_speech() -> None:
    vad = EnergyVad(16000, VadSettings(end_ms=600))
    events = feed_all(vad, tone(0.5) + silence(0.3) + tone(0.5) + silence(0.7))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]


def test_thresholds_are_configurable() -> None:
    quiet = tone(0.5, dbfs=-50) + silence(0.5)
    assert feed_all(EnergyVad(16000), quiet) == []
    assert len(feed_all(EnergyVad(16000, VadSettings(threshold_dbfs=-60, end_ms=200)), quiet)) == 2


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_real_speech(rate: int) -> None:
    pcm, source_rate = speech.espeak_wav("Where is my order one two three four five?")
    pcm = speech.resample(pcm, source_rate, rate)
    vad = EnergyVad(rate)
    events = feed_all(vad, silence(1.0, rate) + pcm + silence(1.0, rate))
    assert len(events) == 2
    start, end = events
    assert isinstance(start, SpeechStarted) and isinstance(end, SpeechEnded)
    assert start.at_s == pytest.approx(1.0, abs=0.1)
    # espeak pads its clip with silence; the detected utterance lies within the clip.
    assert 1.5 < end.duration_s <= len(pcm) / 2 / rate
