"""Assistant speech: espeak-ng + soxr, the synthetic fallback, and the cache."""

from __future__ import annotations

import numpy as np
import pytest

from runner.emulator import speech
from runner.emulator.vad import EnergyVad, SpeechStarted
from tests.emulator.fakes import chunks


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_espeak_speech_at_every_output_rate(rate: int) -> None:
    pcm = speech.synthesize("Your order is shipped.", rate)
    seconds = len(pcm) / 2 / rate
    assert 0.8 < seconds < 3.0
    samples = np.frombuffer(pcm, dtype="<i2")
    assert samples.std() > 500  # actual signal, not silence


def test_same_duration_across_rates() -> None:
    lengths = {rate: len(speech.synthesize("Good morning.", rate)) / 2 / rate for rate in (8000, 24000)}
    assert lengths[8000] == pytest.approx(lengths[24000], abs=0.01)


def test_cached_by_text_and_rate() -> None:
    speech.synthesize.cache_clear()
    first = speech.synthesize("cache me", 16000)
    assert speech.synthesize("cache me", 16000) is first
    assert speech.synthesize.cache_info().hits == 1


def test_fallback_without_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "espeak_available", lambda: False)
    speech.synthesize.cache_clear()
    try:
        pcm = speech.synthesize("twenty characters!!!", 16000)
    finally:
        speech.synthesize.cache_clear()
    assert len(pcm) / 2 / 16000 == pytest.approx(20 * 0.06)
    assert pcm == speech.synthetic_signal("twenty characters!!!", 16000)
    vad = EnergyVad(16000)
    events = [e for piece in chunks(pcm) for e in vad.feed(piece)]
    assert any(isinstance(e, SpeechStarted) for e in events)  # loud enough to be "heard"


def test_espeak_failure_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "ESPEAK", "/nonexistent/espeak-ng")
    monkeypatch.setattr(speech, "espeak_available", lambda: True)
    speech.synthesize.cache_clear()
    try:
        assert speech.synthesize("abc", 8000) == speech.synthetic_signal("abc", 8000)
    finally:
        speech.synthesize.cache_clear()


def test_text_starting_with_a_dash_is_spoken_not_parsed() -> None:
    pcm, rate = speech.espeak_wav("-v is not an option here")
    assert rate == 22050 and len(pcm) > rate
