"""SigV4 verification for the emulator: the request signature and the per-event chunk chain.

Written from the SigV4 spec (not with the SDK's signer) so that the SDK's signing is checked
independently. What the Bedrock SDK signs (see bedrock-sdk.md §3):

* the request: standard SigV4 for service `bedrock`; the already percent-encoded path is encoded
  again (`%3A` → `%253A`); the payload hash is the literal `STREAMING-AWS4-HMAC-SHA256-EVENTS`;
* each event: an outer message with `:date` and `:chunk-signature` headers whose signature chains on
  the previous one (the request's signature seeds the chain); the final message has an empty payload.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import parse_qsl, quote

from runner.emulator.eventstream import Message, Timestamp
from runner.sigv4 import KeyedHmac, signing_key

# encode_headers({":date": Timestamp(ms)}) is these bytes then ms as i64: what the chunk signs.
_DATE_HEADER: Final = b"\x05:date\x08"
_I64: Final = struct.Struct(">q")
STREAMING_PAYLOAD: Final = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
TIMESTAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)

# AWS's own wording, so clients see what they would see from Bedrock.
SIGNATURE_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
UNKNOWN_KEY: Final = "The security token included in the request is invalid."
MISSING_AUTH: Final = "Missing Authentication Token"

_AUTH_RE: Final = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The one key pair the emulator accepts. `session_token`, when set, must match exactly;
    when None, any (signed) `x-amz-security-token` is accepted."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class SignatureError(Exception):
    """Verification failed. `error_type` is the `x-amzn-errortype` AWS sends for it (HTTP 403)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A request whose signature checked out; seeds the chunk chain."""

    signature: str
    timestamp: str


def _hmac(key: bytes, msg: str | bytes) -> bytes:
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, hashlib.sha256).digest()


def canonical_uri(raw_path: str) -> str:
    """The SDK percent-encodes the path once more, keeping '/' (non-S3 SigV4)."""
    return quote(raw_path or "/", safe="/")


def canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{k}={v}" for k, v in sorted((quote(k, safe=""), quote(v, safe="")) for k, v in pairs))


def canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    return "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)


def _credential_scope(
    credential: str, credentials: Credentials | None, region: str, service: str
) -> tuple[str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise SignatureError("IncompleteSignatureException", f"Credential has an invalid scope: {credential}")
    key_id, day, scope_region, scope_service, _ = parts
    if credentials is not None and key_id != credentials.access_key_id:
        raise SignatureError("UnrecognizedClientException", UNKNOWN_KEY)
    if scope_region != region:
        raise SignatureError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{scope_region}'. ",
        )
    if scope_service != service:
        raise SignatureError(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'. "
        )
    return day, "/".join(parts[1:])


def _check_clock(timestamp: str, now: datetime) -> None:
    try:
        when = datetime.strptime(timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", f"Invalid X-Amz-Date: {timestamp}") from None
    if abs(now - when) > MAX_CLOCK_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {timestamp} is now earlier than "
            f"{(now - MAX_CLOCK_SKEW).strftime(TIMESTAMP_FORMAT)} "
            f"({now.strftime(TIMESTAMP_FORMAT)} - 15 min.)",
        )


def verify_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    credentials: Credentials | None,
    *,
    region: str,
    service: str = "bedrock",
    now: datetime | None = None,
) -> VerifiedRequest:
    """Check a request's Authorization header. `headers` has lower-case names and must include
    `host` (HTTP/2 `:authority`); `path` is the raw `:path` (query included).

    With `credentials=None` (any-credentials mode) the request must still be well-formed SigV4
    for this region and service, signed recently, but any key id, session token and signature
    value is accepted: the client's own keys are not known, so its signature cannot be checked."""
    auth = headers.get("authorization")
    if auth is None:
        raise SignatureError("MissingAuthenticationTokenException", MISSING_AUTH)
    match = _AUTH_RE.match(auth.strip())
    if match is None:
        raise SignatureError("IncompleteSignatureException", f"Authorization header is invalid: {auth[:80]}")
    day, scope = _credential_scope(match["credential"], credentials, region, service)
    timestamp = headers.get("x-amz-date", "")
    _check_clock(timestamp, now or datetime.now(UTC))
    if timestamp[:8] != day:
        raise SignatureError("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD.")
    signed = match["signed"].split(";")
    missing = [name for name in signed if name not in headers]
    if missing or "host" not in signed:
        raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
    token = headers.get("x-amz-security-token")
    if token is not None and "x-amz-security-token" not in signed:
        raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
    if credentials is None:
        return VerifiedRequest(signature=match["signature"], timestamp=timestamp)
    if credentials.session_token is not None and token != credentials.session_token:
        raise SignatureError("UnrecognizedClientException", UNKNOWN_KEY)

    raw_path, _, query = path.partition("?")
    canonical = "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(query),
            canonical_headers(headers, signed),
            ";".join(signed),
            headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest()),
        ]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(credentials.secret_access_key, day, region, service)
    expected = _hmac(key, string_to_sign).hex()
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
    return VerifiedRequest(signature=expected, timestamp=timestamp)


class _DayKey:
    """One day's SigV4 signing key (as a KeyedHmac: precomputed pad states, cheaper per chunk on a
    cold cache) and credential scope."""

    def __init__(self, day: str, secret: str | None, region: str, service: str) -> None:
        self.day = day
        self.scope = f"{day}/{region}/{service}/aws4_request"
        key = signing_key(secret, day, region, service) if secret is not None and day else b""
        self.sign = KeyedHmac(key).digest


class ChunkVerifier:
    """Verifies the rolling `:chunk-signature` chain of one stream's outer messages.

    With `secret=None` (any-credentials mode) each message must still carry a `:date` and a
    32-byte `:chunk-signature`, but the signature values are not checked."""

    def __init__(
        self, seed_signature: str, secret: str | None, *, region: str, service: str = "bedrock"
    ) -> None:
        self._prior = seed_signature
        self._secret = secret
        self._region = region
        self._service = service
        self.verified = 0
        self.finished = False
        # Derived once per day (4 HMACs) and once per second (a strftime), not per event: a
        # stream signs ~31 events a second, all with the same day and mostly the same second.
        self._day_key = _DayKey("", None, region, service)
        self._second: tuple[int, str] = (-1, "")

    def verify(self, message: Message) -> bytes:
        """Check one outer message and return its payload (the inner message; b"" = end of input)."""
        if self.finished:
            raise SignatureError("InvalidSignatureException", "Event received after the final signed event.")
        date = message.headers.get(":date")
        signature = message.headers.get(":chunk-signature")
        if not isinstance(date, Timestamp) or not isinstance(signature, bytes) or len(signature) != 32:
            raise SignatureError("MissingAuthenticationTokenException", "Event is missing its signature.")
        if self._secret is None:
            self.verified += 1
            self.finished = not message.payload
            return message.payload
        timestamp = self._timestamp(date)
        day = timestamp[:8]
        if self._day_key.day != day:
            self._day_key = _DayKey(day, self._secret, self._region, self._service)
        string_to_sign = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{timestamp}\n{self._day_key.scope}\n{self._prior}\n"
            f"{hashlib.sha256(_DATE_HEADER + _I64.pack(date.millis)).hexdigest()}\n"
            f"{hashlib.sha256(message.payload).hexdigest()}"
        )
        expected = self._day_key.sign(string_to_sign.encode())
        if not hmac.compare_digest(expected, signature):
            raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
        self._prior = expected.hex()
        self.verified += 1
        self.finished = not message.payload
        return message.payload

    def _timestamp(self, date: Timestamp) -> str:
        """`date` as SigV4's YYYYMMDDTHHMMSSZ (whole seconds, as the signer formats it)."""
        second = date.millis // 1000
        if second != self._second[0]:
            try:
                text = date.to_datetime().strftime(TIMESTAMP_FORMAT)
            except (ValueError, OverflowError, OSError):  # i64 milliseconds far outside datetime's years
                raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH) from None
            self._second = (second, text)
        return self._second[1]
