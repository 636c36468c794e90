"""SigV4 verification against signatures computed step by step in the test (no SDK, no botocore)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.emulator import sigv4
from runner.emulator.eventstream import Message, Timestamp, encode_message
from runner.emulator.sigv4 import (
    SIGNATURE_MISMATCH,
    UNKNOWN_KEY,
    ChunkVerifier,
    Credentials,
    SignatureError,
    verify_request,
)

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDS = Credentials(KEY_ID, SECRET)
NOW = datetime(2026, 11, 21, 19, 8, 56, tzinfo=UTC)
AMZ_DATE = "20261121T190856Z"
PATH = "/model/amazon.nova-sonic-v1%3A0/invoke-with-bidirectional-stream?"


def hmac256(key: bytes, msg: str | bytes) -> bytes:
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, hashlib.sha256).digest()


def k_signing(day: str) -> bytes:
    return hmac256(
        hmac256(hmac256(hmac256(b"AWS4" + SECRET.encode(), day), "us-east-1"), "bedrock"), "aws4_request"
    )


def signed_headers(token: str | None = None) -> dict[str, str]:
    """Headers as the SDK sends them, with a signature computed by hand from the spec."""
    headers = {
        "content-type": "application/vnd.amazon.eventstream",
        "host": "localhost:8443",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-EVENTS",
        "x-amz-date": AMZ_DATE,
    }
    if token is not None:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical = (
        "POST\n"
        "/model/amazon.nova-sonic-v1%253A0/invoke-with-bidirectional-stream\n"  # encoded twice
        "\n"
        + "".join(f"{n}:{headers[n]}\n" for n in names)
        + "\n"
        + ";".join(names)
        + "\nSTREAMING-AWS4-HMAC-SHA256-EVENTS"
    )
    scope = "20261121/us-east-1/bedrock/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{AMZ_DATE}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac256(k_signing("20261121"), to_sign).hex()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    headers["user-agent"] = "aws-sdk-python/0.12.0"  # unsigned headers must not matter
    return headers


def test_valid_request_signature_is_accepted() -> None:
    headers = signed_headers()
    verified = verify_request("POST", PATH, headers, CREDS, region="us-east-1", now=NOW)
    assert headers["authorization"].endswith(verified.signature)
    assert verified.timestamp == AMZ_DATE


def test_session_token_is_signed_and_checked() -> None:
    headers = signed_headers(token="session-token-1")
    assert verify_request("POST", PATH, headers, CREDS, region="us-east-1", now=NOW)
    pinned = Credentials(KEY_ID, SECRET, session_token="other-token")
    with pytest.raises(SignatureError) as info:
        verify_request("POST", PATH, headers, pinned, region="us-east-1", now=NOW)
    assert info.value.error_type == "UnrecognizedClientException"


@pytest.mark.parametrize(
    ("change", "error_type", "message"),
    [
        ({"x-amz-date": "20261121T190857Z"}, "InvalidSignatureException", SIGNATURE_MISMATCH),
        ({"host": "localhost:8444"}, "InvalidSignatureException", SIGNATURE_MISMATCH),
        ({"content-type": "application/json"}, "InvalidSignatureException", SIGNATURE_MISMATCH),
        ({"authorization": None}, "MissingAuthenticationTokenException", "Missing Authentication Token"),
        ({"authorization": "Bearer abc"}, "IncompleteSignatureException", "Authorization header is invalid"),
    ],
)
def test_tampered_requests_are_rejected(change: dict[str, str | None], error_type: str, message: str) -> None:
    headers = signed_headers()
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(SignatureError) as info:
        verify_request("POST", PATH, headers, CREDS, region="us-east-1", now=NOW)
    assert info.value.error_type == error_type
    assert info.value.message.startswith(message)


def test_wrong_path_secret_key_region_and_clock() -> None:
    headers = signed_headers()
    other_path = PATH.replace("sonic", "lite")
    with pytest.raises(SignatureError, match="signature we calculated"):
        verify_request("POST", other_path, headers, CREDS, region="us-east-1", now=NOW)
    with pytest.raises(SignatureError, match="signature we calculated"):
        verify_request("POST", PATH, headers, Credentials(KEY_ID, "x" * 40), region="us-east-1", now=NOW)
    with pytest.raises(SignatureError) as info:
        verify_request("POST", PATH, headers, Credentials("AKIAOTHER", SECRET), region="us-east-1", now=NOW)
    assert (info.value.error_type, info.value.message) == ("UnrecognizedClientException", UNKNOWN_KEY)
    with pytest.raises(SignatureError, match="scoped to a valid region, not 'us-east-1'"):
        verify_request("POST", PATH, headers, CREDS, region="eu-west-1", now=NOW)
    later = NOW.replace(hour=20)
    with pytest.raises(SignatureError, match="Signature expired"):
        verify_request("POST", PATH, headers, CREDS, region="us-east-1", now=later)


def sign_chunk(prior_hex: str, when: datetime, payload: bytes) -> Message:
    """One outer event as AsyncEventSigner builds it, computed by hand."""
    millis = int(when.timestamp() * 1000)
    # The `:date` header alone, encoded by hand: name length, name, type 8, i64 millis.
    date_header = bytes([5]) + b":date" + bytes([8]) + millis.to_bytes(8, "big", signed=True)
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            stamp,
            f"{stamp[:8]}/us-east-1/bedrock/aws4_request",
            prior_hex,
            hashlib.sha256(date_header).hexdigest(),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    signature = hmac256(k_signing(stamp[:8]), to_sign)
    return Message({":date": Timestamp(millis), ":chunk-signature": signature}, payload)


def test_chunk_chain_accepts_valid_and_rejects_reordered_or_tampered() -> None:
    seed = "ab" * 32
    inner = [encode_message({":event-type": "chunk"}, f"event {i}".encode()) for i in range(3)]
    chain: list[Message] = []
    prior = seed
    for i, payload in enumerate([*inner, b""]):
        message = sign_chunk(prior, NOW.replace(second=i), payload)
        prior = message.headers[":chunk-signature"].hex()  # type: ignore[union-attr]
        chain.append(message)

    verifier = ChunkVerifier(seed, SECRET, region="us-east-1")
    assert [verifier.verify(m) for m in chain] == [*inner, b""]
    assert verifier.finished and verifier.verified == 4
    with pytest.raises(SignatureError, match="after the final"):
        verifier.verify(chain[0])

    skipped = ChunkVerifier(seed, SECRET, region="us-east-1")
    skipped.verify(chain[0])
    with pytest.raises(SignatureError) as info:
        skipped.verify(chain[2])
    assert (info.value.error_type, info.value.message) == ("InvalidSignatureException", SIGNATURE_MISMATCH)

    tampered = Message(chain[0].headers, chain[0].payload + b"x")
    with pytest.raises(SignatureError, match="signature we calculated"):
        ChunkVerifier(seed, SECRET, region="us-east-1").verify(tampered)
    with pytest.raises(SignatureError, match="signature we calculated"):
        ChunkVerifier("cd" * 32, SECRET, region="us-east-1").verify(chain[0])
    with pytest.raises(SignatureError, match="missing its signature"):
        ChunkVerifier(seed, SECRET, region="us-east-1").verify(Message({}, inner[0]))


@given(secret=st.text(min_size=1, max_size=60), day=st.from_regex(r"20[0-9]{6}", fullmatch=True),
       msg=st.binary(max_size=2000))
def test_day_key_signs_as_hmac_sha256(secret: str, day: str, msg: bytes) -> None:
    """The chunk chain's HMAC from precomputed pads is HMAC-SHA256 of the day's signing key."""
    key = sigv4.signing_key(secret, day, "us-east-1", "bedrock")
    assert sigv4._DayKey(day, secret, "us-east-1", "bedrock").sign(msg) == sigv4._hmac(key, msg)
