"""G.711 μ-law (PCMU), both ways, on whole buffers with numpy (the telephone network's 8-bit codec).

Encoding follows ITU-T G.711 as in the reference `g711.c` (Sun, public domain): the magnitude
is clipped to 32635, biased by 0x84, and coded as a 3-bit segment (exponent) and a 4-bit step
(mantissa); the byte is inverted, so silence (0) is 0xFF. Decoding returns the middle of each step.

Both directions are table look-ups built once at import: 256 decoded samples and 65,536 encoded
bytes (one per 16-bit sample), so a 20 ms telephone frame costs one numpy indexing operation.
Python 3.13 removed `audioop`, which used to do this.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BIAS = 0x84
CLIP = 32635


def _encode_all() -> npt.NDArray[np.uint8]:
    """The μ-law byte of every int16 value, indexed by the value's uint16 bit pattern."""
    pcm = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(pcm), CLIP) + BIAS  # 0x84 .. 0x7FFF
    # The segment is the position of the highest set bit above bit 7 (0 for magnitudes < 0x100).
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code: npt.NDArray[np.int64] = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return code.astype(np.uint8)


def _decode_all() -> npt.NDArray[np.int16]:
    """The linear sample of every μ-law byte."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


_ENCODE = _encode_all()
_DECODE = _decode_all()


def ulaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """16-bit little-endian mono PCM → μ-law, one byte per sample (a trailing odd byte is ignored)."""
    view = memoryview(pcm).cast("B")
    usable = len(view) - len(view) % 2
    samples = np.frombuffer(view[:usable], dtype="<u2")
    codes: npt.NDArray[np.uint8] = _ENCODE[samples]
    return codes.tobytes()


def ulaw_decode(ulaw: bytes | bytearray | memoryview) -> bytes:
    """μ-law bytes → 16-bit little-endian mono PCM (two bytes per input byte)."""
    codes = np.frombuffer(memoryview(ulaw).cast("B"), dtype=np.uint8)
    return _DECODE[codes].astype("<i2", copy=False).tobytes()


# μ-law of digital silence, for padding a frame.
ULAW_SILENCE = 0xFF
