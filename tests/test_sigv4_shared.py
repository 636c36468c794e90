"""runner.sigv4: the signing key and the precomputed-key HMAC shared by the emulator and the SDK
send fast path agree with the standard library's HMAC (RFC 2104), for any key and message."""

from __future__ import annotations

import hmac

from hypothesis import given
from hypothesis import strategies as st

from runner.sigv4 import KeyedHmac, signing_key


@given(key=st.binary(max_size=200), msgs=st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_keyed_hmac_equals_hmac_for_any_key(key: bytes, msgs: list[bytes]) -> None:
    mac = KeyedHmac(key)
    for msg in msgs:  # the precomputed states are reused, never consumed
        assert mac.digest(msg) == hmac.digest(key, msg, "sha256")


def test_signing_key_is_sigv4s_chain() -> None:
    # AWS's documented example (SigV4 "derive the signing key"): secret, 20150830, us-east-1, iam.
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
