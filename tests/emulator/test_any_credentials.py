"""Any-credentials mode of the SigV4 checks: key and signature values are not checked, the
request's SigV4 shape still is."""

from __future__ import annotations

import pytest
from test_sigv4 import AMZ_DATE, NOW, PATH, signed_headers

from runner.emulator.eventstream import Message, Timestamp
from runner.emulator.sigv4 import ChunkVerifier, SignatureError, verify_request


def _with_other_key(headers: dict[str, str]) -> dict[str, str]:
    auth = headers["authorization"].replace("AKIDEXAMPLE", "AKIAOTHERKEY00000000")
    return {**headers, "authorization": auth[:-64] + "0" * 64}


def test_any_key_and_signature_value_is_accepted() -> None:
    headers = _with_other_key(signed_headers(token="someone-elses-token"))
    verified = verify_request("POST", PATH, headers, None, region="us-east-1", now=NOW)
    assert verified.signature == "0" * 64 and verified.timestamp == AMZ_DATE


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        (lambda h: h.pop("authorization"), "MissingAuthenticationTokenException"),
        (lambda h: h.update(authorization="Bearer abc"), "IncompleteSignatureException"),
        (lambda h: h.update(authorization=h["authorization"].replace("/bedrock/", "/s3/")),
         "InvalidSignatureException"),
        (lambda h: h.update(authorization=h["authorization"].replace("/us-east-1/", "/eu-west-1/")),
         "InvalidSignatureException"),
        (lambda h: h.update({"x-amz-date": "20200101T000000Z"}), "InvalidSignatureException"),
        (lambda h: h.pop("x-amz-date"), "IncompleteSignatureException"),
        (lambda h: h.update({"x-amz-security-token": "unsigned"}), "InvalidSignatureException"),
    ],
)
def test_malformed_sigv4_is_still_refused(change: object, error_type: str) -> None:
    headers = _with_other_key(signed_headers())
    change(headers)  # type: ignore[operator]
    with pytest.raises(SignatureError) as caught:
        verify_request("POST", PATH, headers, None, region="us-east-1", now=NOW)
    assert caught.value.error_type == error_type


def test_chunks_need_a_date_and_a_signature_but_any_value() -> None:
    verifier = ChunkVerifier("0" * 64, None, region="us-east-1")
    signed = Message({":date": Timestamp(1_700_000_000_000), ":chunk-signature": b"\x01" * 32}, b"inner")
    assert verifier.verify(signed) == b"inner"
    with pytest.raises(SignatureError):
        verifier.verify(Message({":date": Timestamp(1_700_000_000_000)}, b"inner"))
    with pytest.raises(SignatureError):
        verifier.verify(Message({":date": Timestamp(1_700_000_000_000), ":chunk-signature": b"short"}, b"x"))
