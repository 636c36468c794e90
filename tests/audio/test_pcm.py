from __future__ import annotations

import struct

import numpy as np
import pytest
from audio_helpers import tone
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.audio.base import AudioFormat
from runner.audio.pcm import (
    SILENCE_DBFS,
    duration_ms,
    pad_to,
    rms_dbfs,
    silence,
    split,
    sum_of_squares,
    sums_of_squares,
    to_mono,
)


def test_silence_is_whole_frames_of_zeros() -> None:
    assert silence(20, 16000) == bytes(640)
    assert silence(20, 24000, channels=2) == bytes(1920)
    assert silence(0.01, 16000) == b""


def test_duration_ms() -> None:
    assert duration_ms(bytes(640), 16000) == 20
    assert duration_ms(bytes(48000), 24000) == 1000
    assert duration_ms(bytes(4 * 441), 44100, channels=2) == 10


def test_rms_dbfs_levels() -> None:
    assert rms_dbfs(b"") == SILENCE_DBFS
    assert rms_dbfs(bytes(640)) == SILENCE_DBFS
    # A sine at half scale: RMS is amplitude/sqrt(2), i.e. -6.02 - 3.01 dB.
    assert rms_dbfs(tone(440, 100, 16000, 0.5)) == pytest.approx(-9.03, abs=0.05)
    assert rms_dbfs(np.full(100, -32768, dtype="<i2").tobytes()) == pytest.approx(0.0)


def test_split_keeps_every_byte() -> None:
    pcm = bytes(range(250)) * 4
    pieces = list(split(pcm, 64))
    assert b"".join(pieces) == pcm
    assert [len(p) for p in pieces[:-1]] == [64] * (len(pieces) - 1)
    assert len(pieces[-1]) == 1000 % 64
    with pytest.raises(ValueError, match="positive"):
        list(split(pcm, 0))


def test_to_mono_averages_channels() -> None:
    stereo = np.array([[100, 300], [-200, -400], [32767, 32767]], dtype="<i2").tobytes()
    assert np.frombuffer(to_mono(stereo, 2), dtype="<i2").tolist() == [200, -300, 32767]
    assert to_mono(b"\x01\x02", 1) == b"\x01\x02"


def test_pad_to() -> None:
    assert pad_to(b"ab", 4) == b"ab\x00\x00"
    assert pad_to(b"abcd", 2) == b"abcd"


def test_audio_format_helpers() -> None:
    f16, f24 = AudioFormat(16000), AudioFormat(24000)
    assert (f16.frame_bytes, f16.bytes_per_ms) == (2, 32)
    assert (f16.bytes_for_ms(20), f16.frames_for_ms(20)) == (640, 320)
    assert f24.bytes_for_ms(20) == 960
    assert f24.duration_ms(48000) == 1000
    assert AudioFormat(44100, channels=2).bytes_for_ms(10) == 441 * 4
    with pytest.raises(ValueError, match="invalid audio format"):
        AudioFormat(0)


_chunk = st.builds(lambda xs, odd: struct.pack(f"<{len(xs)}h", *xs) + (b"\x01" if odd else b""),
                   st.lists(st.integers(-32768, 32767), max_size=40), st.booleans())


# Chunks of one length (a microphone's: measured as one array) or of any lengths.
_same_length = st.integers(0, 41).flatmap(
    lambda n: st.lists(st.binary(min_size=n, max_size=n), max_size=12))


@settings(max_examples=200, deadline=None)
@given(chunks=st.one_of(st.lists(_chunk, max_size=12), _same_length))
def test_sums_of_squares_is_each_chunks_exact_sum(chunks: list[bytes]) -> None:
    # Empty chunks, odd trailing bytes and full-scale samples included; the exact sums, in order.
    expected = [sum(v * v for v in struct.unpack(f"<{len(c) // 2}h", c[:len(c) // 2 * 2])) for c in chunks]
    assert sums_of_squares(chunks) == expected
    assert [sum_of_squares(c) for c in chunks] == expected


def test_sums_of_squares_of_full_scale_chunks_do_not_overflow() -> None:
    assert sums_of_squares([b"\x00\x80" * 512] * 3) == [512 * 2**30] * 3  # -32768 squared is 2**30
