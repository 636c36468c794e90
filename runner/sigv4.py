"""SigV4's signing-key derivation and HMAC-SHA256 with a precomputed key, shared by the emulator
(which verifies each event's chunk signature) and the SDK send fast path (which makes them).

`KeyedHmac` keeps the key's RFC 2104 inner and outer pad states, so a message costs two SHA-256
runs from copied states: on the cold CPU cache each real-time event finds, about half of
`hmac.digest`, which sets the key up on every call.
"""

from __future__ import annotations

import hashlib
import hmac

_BLOCK = 64  # SHA-256's block size


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """The SigV4 signing key of `secret` for one day (YYYYMMDD), region and service."""
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


class KeyedHmac:
    """HMAC-SHA256 under one key; `digest(msg)` equals `hmac.digest(key, msg, "sha256")`."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:  # RFC 2104: a longer key is hashed first (SigV4 keys are 32 bytes)
            key = hashlib.sha256(key).digest()
        block = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
