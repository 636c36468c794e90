"""Energy VAD on generated tones/silence and on real espeak-ng speech."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runner.emulator import speech
from runner.emulator.vad import (
    SILENCE_DBFS,
    EnergyVad,
    SpeechEnded,
    SpeechStarted,
    VadSettings,
)
from tests.emulator.fakes import chunks, silence, tone


# The VAD's loudness, defined on RMS levels: the reference its integer energy loop is held to
# (the emulator's VAD used these until it dropped numpy for speed on a cold cache).
def frame_dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 `samples` relative to full scale (SILENCE_DBFS for digital silence)."""
    if samples.size == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    if rms <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * float(np.log10(rms / 32768.0)))


def frames_loud(frames: np.ndarray, threshold_dbfs: float) -> np.ndarray:
    """Per row of int16 `frames`: is `frame_dbfs(row) >= threshold_dbfs`? One vectorised pass
    (a 32 ms chunk is 1-2 frames; per-frame numpy calls cost more than the arithmetic). The
    comparison is made on the exact integer sum of squares, against the threshold's energy."""
    energy = np.einsum("ij,ij->i", frames, frames, dtype=np.int64)
    if threshold_dbfs <= SILENCE_DBFS:  # frame_dbfs never goes below SILENCE_DBFS
        return np.ones(len(frames), dtype=bool)
    # dBFS >= T  <=>  rms >= 32768 * 10^(T/20)  <=>  sum of squares >= n * (32768 * 10^(T/20))^2
    limit = frames.shape[1] * (32768.0 * 10.0 ** (threshold_dbfs / 20.0)) ** 2
    loud: np.ndarray = energy >= limit
    return loud


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


def _frames(samples: list[int], frame_len: int) -> bytes:
    whole = len(samples) - len(samples) % frame_len
    return struct.pack(f"<{whole}h", *samples[:whole])


def _limit_amplitude(threshold_dbfs: float) -> int:
    """The constant amplitude whose frame energy lies at the loudness limit (rounded)."""
    return min(32767, round(32768.0 * 10.0 ** (threshold_dbfs / 20.0)))


@given(
    frame_len=st.sampled_from([1, 7, 160, 320, 480]),
    threshold=st.one_of(st.floats(-140.0, 0.0), st.sampled_from([SILENCE_DBFS, -40.0, 0.0])),
    samples=st.lists(st.one_of(st.integers(-32768, 32767), st.sampled_from([-32768, 32767, 0, 1, -1])),
                     max_size=1500),
)
@example(frame_len=320, threshold=-40.0, samples=[_limit_amplitude(-40.0)] * 640)
@example(frame_len=320, threshold=-40.0, samples=[_limit_amplitude(-40.0) - 1] * 320)
@example(frame_len=320, threshold=-40.0, samples=[-32768] * 320)
@example(frame_len=320, threshold=-40.0, samples=[0] * 319 + [1])
def test_loudness_verdicts_match_frames_loud(frame_len: int, threshold: float, samples: list[int]) -> None:
    """The VAD's per-frame verdicts (an integer energy loop, for speed on a cold cache) are
    frames_loud's (numpy), for any samples and threshold, at and around the limit included."""
    pcm = _frames(samples, frame_len)
    vad = EnergyVad(frame_len * 50, VadSettings(threshold_dbfs=threshold))
    frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, frame_len)
    assert vad._louds(pcm) == frames_loud(frames, threshold).tolist()


@given(samples=st.lists(st.integers(-32768, 32767), min_size=320, max_size=320),
       amplitude=st.one_of(st.integers(320, 336), st.integers(0, 32767)))
def test_loudness_at_the_limit_matches_frames_loud(samples: list[int], amplitude: int) -> None:
    """Constant frames at every amplitude around the -40 dBFS limit, next to random ones."""
    threshold = -40.0
    pcm = _frames([amplitude] * 320 + samples + [-amplitude] * 320, 320)
    frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, 320)
    assert EnergyVad(16000, VadSettings(threshold_dbfs=threshold))._louds(pcm) == \
        frames_loud(frames, threshold).tolist()
