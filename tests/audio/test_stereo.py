"""The stereo timeline of a recording: each side where it happened, seamless despite jitter, cut at
a barge-in; and the WAV file valid at every step."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from runner.audio.stereo import ASSISTANT, USER, GrowingWavFile, StereoTimeline

RATE = 1000  # one frame a millisecond keeps the arithmetic readable


def tone(frames: int, value: int) -> bytes:
    return np.full(frames, value, dtype="<i2").tobytes()


def channels(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    frames = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
    return frames[:, 0], frames[:, 1]


def test_each_side_lands_at_its_time_and_chunks_within_the_slack_join_up() -> None:
    timeline = StereoTimeline(RATE, slack_s=0.05)
    timeline.add(USER, 0.0, tone(100, 1))
    timeline.add(USER, 0.130, tone(100, 2))  # 30 ms late: jitter, joined on (starts at 100)
    timeline.add(ASSISTANT, 0.5, tone(100, 3))  # a gap: starts at its time
    left, right = channels(timeline.take(None))
    assert len(left) == 600
    assert (left[:200] == np.repeat([1, 2], 100)).all() and (left[200:] == 0).all()
    assert (right[:500] == 0).all() and (right[500:] == 3).all()


def test_a_burst_plays_out_after_itself_and_a_cut_drops_what_was_never_heard() -> None:
    timeline = StereoTimeline(RATE)
    for _ in range(5):  # 500 ms of answer arriving at once
        timeline.add(ASSISTANT, 1.0, tone(100, 7))
    timeline.cut(ASSISTANT, 1.2)  # the user barged in 200 ms into it
    _, right = channels(timeline.take(None))
    assert len(right) == 1200 and (right[1000:] == 7).all() and (right[:1000] == 0).all()


def test_taken_frames_are_final_and_a_cut_never_reaches_back_into_them() -> None:
    timeline = StereoTimeline(RATE)
    timeline.add(ASSISTANT, 0.0, tone(300, 5))
    first = timeline.take(0.1)
    assert len(first) == 100 * 4 and timeline.frames_taken == 100
    timeline.cut(ASSISTANT, 0.05)  # before what was taken: cuts at the taken edge
    assert timeline.take(None) == b""
    assert timeline.take(0.05) == b""


def test_the_wav_is_valid_after_every_append(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    wav = GrowingWavFile(path, 24000)
    for n in (0, 480, 960):
        wav.append(bytes(4 * n))
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 24000, 2)
    with wave.open(str(path)) as w:
        assert w.getnframes() == 1440
    wav.close()
