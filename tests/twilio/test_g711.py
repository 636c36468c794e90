from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from runner.audio.g711 import ulaw_decode, ulaw_encode


def pcm(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def decoded(codes: bytes) -> list[int]:
    return [int(v) for v in np.frombuffer(ulaw_decode(codes), dtype="<i2")]


def reference_encode(sample: int) -> int:
    """The G.711 reference encoder (Sun's g711.c linear2ulaw), one sample, in plain Python."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = 7
    for exp, mask in enumerate((0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000, 0x8000)):
        if magnitude < mask:
            exponent = exp
            break
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


@pytest.mark.parametrize(("sample", "code"), [
    (0, 0xFF),          # silence
    (-1, 0x7F),         # "negative zero"
    (32767, 0x80),      # positive full scale
    (-32768, 0x00),     # negative full scale
    (32124, 0x80),      # the largest decoded value codes to itself
    (100, 0xF2),
    (-100, 0x72),
    (1000, 0xCE),
])
def test_known_codes(sample: int, code: int) -> None:
    assert ulaw_encode(pcm(sample)) == bytes([code])


def test_decode_known_values() -> None:
    assert decoded(bytes([0xFF, 0x7F, 0x80, 0x00, 0xF0, 0x70])) == [0, 0, 32124, -32124, 120, -120]


def test_every_sample_matches_the_reference_encoder() -> None:
    everything = np.arange(-32768, 32768, dtype="<i2")
    ours = ulaw_encode(everything.tobytes())
    assert len(ours) == 65536
    ref = bytes(reference_encode(int(s)) for s in everything)
    assert ours == ref


def test_matches_audioop_where_it_still_exists() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            audioop = importlib.import_module("audioop")
        except ImportError:
            pytest.skip("audioop was removed (Python 3.13+)")
    every_code = bytes(range(256))
    assert ulaw_decode(every_code) == audioop.ulaw2lin(every_code, 2)
    ramp = np.arange(-32768, 32768, 7, dtype="<i2").tobytes()
    # audioop codes the top 14 bits, so it may differ by one step at a step edge; never more.
    ours = np.frombuffer(ulaw_decode(ulaw_encode(ramp)), dtype="<i2").astype(int)
    theirs = np.frombuffer(audioop.ulaw2lin(audioop.lin2ulaw(ramp, 2), 2), dtype="<i2").astype(int)
    assert np.mean(ours == theirs) > 0.99


def test_sign_symmetry() -> None:
    values = np.arange(1, 32768, dtype=np.int32)
    pos = np.frombuffer(ulaw_encode(values.astype("<i2").tobytes()), dtype=np.uint8)
    neg = np.frombuffer(ulaw_encode((-values).astype("<i2").tobytes()), dtype=np.uint8)
    # Sign is the top bit; the magnitude bits are the same (the -1 case aside, all match).
    assert np.all((pos ^ neg) == 0x80)
    codes = bytes(range(256))
    dec = np.frombuffer(ulaw_decode(codes), dtype="<i2")
    assert np.array_equal(dec[:128], -dec[128:])


def test_round_trip_error_is_within_half_a_step() -> None:
    x = np.arange(-32768, 32768, dtype=np.int32)
    y = np.frombuffer(ulaw_decode(ulaw_encode(x.astype("<i2").tobytes())), dtype="<i2").astype(np.int32)
    err = np.abs(y - x)
    clipped = np.abs(x) > 32124
    # A step in segment e is 2**(e+3) wide: the decoded middle is at most half of it away.
    magnitude = np.abs(x[~clipped]) + 0x84
    step = 2 ** (np.floor(np.log2(magnitude)).astype(int) - 7 + 3)
    assert np.all(err[~clipped] <= step // 2)
    assert np.all(err[clipped] <= 32768 - 32124)
    # A log codec: the relative error stays about constant (under 3.5%) once out of the lowest segments.
    big = np.abs(x) >= 1024
    assert np.max(err[big] / np.abs(x[big])) < 0.035


def test_monotonic_decode_of_encode() -> None:
    x = np.arange(-32768, 32768, dtype="<i2")
    y = np.frombuffer(ulaw_decode(ulaw_encode(x.tobytes())), dtype="<i2").astype(np.int32)
    assert np.all(np.diff(y) >= 0)


def test_lengths_and_odd_byte() -> None:
    assert ulaw_encode(b"") == b""
    assert ulaw_decode(b"") == b""
    assert len(ulaw_encode(bytes(320))) == 160
    assert ulaw_encode(bytes(321)) == bytes([0xFF]) * 160
    assert len(ulaw_decode(bytes(160))) == 320
