"""A fast path for the SDK's event publisher: the same signed chunk frames for less CPU (issue 11).

Every 32 ms the runner sends one `audioInput` chunk, and the SDK's `AWSEventPublisher.send` spends
~440 µs on it: a generic shape serializer, a generic header encoder, `datetime.strftime`, a copy of
the signing properties and five HMACs to re-derive a signing key that changes once a day. This
module builds byte-for-byte the same frame (tests/transports/test_sdk_send.py checks it against the
SDK's own publisher) with what does not change computed once per stream:

- the inner message's headers and the JSON wrapping of the payload, taken from the SDK's own
  serializer for a probe event (not written down here, so a changed SDK cannot silently differ);
- the `:date` / `:chunk-signature` header prefixes, taken from the signer's own header encoder;
- the SigV4 signing key, kept per (secret key, day, region, service);
- the timestamp string, kept per second.

It still drives the SDK's objects: it asks the publisher's identity resolver for credentials on
every event (they may be refreshed), advances the signer's `_prior_signature` exactly as
`AsyncEventSigner._sign_payload` does (so the SDK's own `close()` signs the final frame on the right
chain), and writes through the body provider's public `write`, or, when the transport says that
cannot reorder anything, straight to the HTTP/2 stream (`DirectWriter`, crt.py's write_nowait).
It relies on private attributes of SDK 0.12.0 (aws-sdk-signers 0.4.0, smithy-aws-event-stream
0.3.0): `attach` checks every one of them and a full probe frame against the SDK, and on any
difference the stream keeps the SDK's own `send`.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import math
import struct
import types
import zlib
from base64 import b64encode
from binascii import hexlify
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aws_sdk_signers import AsyncEventSigner
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.aio import AWSEventPublisher, SigningConfig
from smithy_aws_event_stream.events import MAX_PAYLOAD_LENGTH, EventMessage

from runner.sigv4 import KeyedHmac, signing_key
from runner.transports.pins import log_fallback_once, pin_problem

log = logging.getLogger("runner.transport")

# The versions whose internals this module was written against (pyproject pins the client).
PINNED: Final = {"aws-sdk-bedrock-runtime": "0.12.0", "aws-sdk-signers": "0.4.0",
                 "smithy-aws-event-stream": "0.3.0"}
TIMESTAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"  # SigV4's, as the signer formats `:date`
# Larger chunks go through the SDK, which raises its own error past 16 MiB: base64 grows 4/3 and
# the framing adds < 4 KiB, so below this the fast path can never cross the SDK's limits.
FAST_LIMIT: Final = (MAX_PAYLOAD_LENGTH - 4096) // 4 * 3
# A probe whose base64 has '+', '/' and '=' padding: whatever the JSON codec does to them shows.
_PROBE: Final = b"\xfb\xff\xbf\xfb\xef\x00"
_PROBE_SECRET: Final = "probe/secret+key"
_PROBE_PRIOR: Final = b"0" * 64
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_PRELUDE = struct.Struct(">II")
_PRELUDE_CRC = struct.Struct(">III")
_PRELUDE_SIZE: Final = 12

type Clock = Callable[[], datetime.datetime]
type MakeEvent = Callable[[bytes], Any]


class DirectWriter(Protocol):
    """The transport's way round the body provider (crt.LeanHttp2Stream)."""

    def write_nowait(self, chunk: bytes) -> bool:
        """Queue `chunk` as the next piece of the request body now, or return False (nothing done)
        if it might overtake a chunk already given to the provider; raises if the stream failed."""
        ...


# The provider (the publisher's `_writer`) -> its DirectWriter, None while there is none.
type FindDirect = Callable[[object], DirectWriter | None]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _message(headers: bytes, payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    total, length = len(headers) + len(payload) + _PRELUDE_SIZE + 4, len(headers)
    prelude = _PRELUDE_CRC.pack(total, length, zlib.crc32(_PRELUDE.pack(total, length)))
    crc = zlib.crc32(payload, zlib.crc32(headers, zlib.crc32(prelude)))
    return b"".join((prelude, headers, payload, _U32.pack(crc)))


def _split(message: bytes) -> tuple[bytes, bytes]:
    """(headers, payload) of one encoded message."""
    _, headers_length = _PRELUDE.unpack_from(message)
    return message[_PRELUDE_SIZE:_PRELUDE_SIZE + headers_length], message[_PRELUDE_SIZE + headers_length:-4]



@dataclass(frozen=True, slots=True)
class Framing:
    """The constant bytes of a chunk frame, as the SDK's serializer and header encoder write them."""

    inner_headers: bytes   # :message-type event, :event-type chunk, :content-type application/json
    payload_prefix: bytes  # {"bytes":"
    payload_suffix: bytes  # "}
    date_prefix: bytes     # the :date header up to its 8-byte milliseconds
    signature_prefix: bytes  # the :chunk-signature header up to its 32 signature bytes


class Signer:
    """SigV4 event signing with what only changes per second / per day kept between events."""

    __slots__ = ("_clock", "_day", "_framing", "_head", "_head_for", "_key_for", "_mac")

    def __init__(self, framing: Framing, clock: Clock) -> None:
        self._framing = framing
        self._clock = clock
        self._head_for: tuple[int, str, str] = (-1, "", "")
        self._head = b""
        self._day = ""
        self._key_for: tuple[str, str, str, str] = ("", "", "", "")
        self._mac = KeyedHmac(b"")

    def frame(self, payload: bytes, *, prior: bytes, secret: str, region: str,
              service: str) -> tuple[bytes, bytes]:
        """(the wire frame for one chunk, its signature's hex as the next `prior`)."""
        f = self._framing
        inner = _message(f.inner_headers,
                         b"".join((f.payload_prefix, b64encode(payload), f.payload_suffix)))
        now = self._clock()
        seconds = now.timestamp()
        # The signer encodes `:date` as int(timestamp() * 1000) and the string to sign from
        # strftime of the same datetime: both are kept exactly so, the latter per whole second.
        head_for = (math.floor(seconds), region, service)
        if head_for != self._head_for:
            stamp = now.strftime(TIMESTAMP_FORMAT)
            self._head_for, self._day = head_for, stamp[:8]
            scope = f"{self._day}/{region}/{service}/aws4_request"
            self._head = f"AWS4-HMAC-SHA256-PAYLOAD\n{stamp}\n{scope}\n".encode()
        if (secret, self._day, region, service) != self._key_for:
            self._key_for = (secret, self._day, region, service)
            self._mac = KeyedHmac(signing_key(secret, self._day, region, service))
        date_header = f.date_prefix + _I64.pack(int(seconds * 1000))
        string_to_sign = b"".join((self._head, prior, b"\n", hexlify(hashlib.sha256(date_header).digest()),
                                   b"\n", hexlify(hashlib.sha256(inner).digest())))
        # From the key's precomputed pad states: on a cold cache 30-40 µs less per event than
        # hmac.digest, which sets the key up every time.
        signature = self._mac.digest(string_to_sign)
        return _message(date_header + f.signature_prefix + signature, inner), hexlify(signature)


class FastChunkSender:
    """Sends chunk events on one SDK stream's publisher, signing them itself (see the module doc)."""

    def __init__(self, publisher: Any, config: Any, signer: Signer, make_event: MakeEvent,
                 find_direct: FindDirect | None = None) -> None:
        self._publisher = publisher
        self._writer = publisher._writer
        self._sdk_signer = config.signer
        self._lock: asyncio.Lock = config.signer._signing_lock
        self._resolver = config.identity_resolver
        self._identity_properties = config.identity_properties
        self._properties: dict[str, Any] = config.signing_properties
        self._signer = signer
        self._make_event = make_event
        self._find_direct = find_direct
        self._direct: DirectWriter | None = None
        self.fast_sends = 0  # for tests and diagnostics: events this path framed itself
        self.direct_writes = 0  # of those, the ones handed to the transport without the provider

    async def send(self, payload: bytes) -> None:
        """What `publisher.send(make_event(payload))` does, with the same bytes on the wire."""
        publisher = self._publisher
        if publisher.closed:
            raise OSError("Attempted to write to closed stream.")  # the SDK's words
        identity = await self._resolver.get_identity(properties=self._identity_properties)
        frame = self._frame(payload, identity)
        if frame is None:
            await publisher.send(self._make_event(payload))
            return
        self.fast_sends += 1
        direct = self._direct
        if direct is None and self._find_direct is not None:
            # The transport's writer starts after the stream opens; once found, it stays.
            direct = self._direct = self._find_direct(self._writer)
        try:
            if direct is not None and direct.write_nowait(frame):
                self.direct_writes += 1
                return
            await self._writer.write(frame)
        except Exception as exc:  # as AWSEventPublisher.send: the stream is closed, OSError raised
            await publisher.close()
            raise OSError("Failed to write to stream.") from exc

    def _frame(self, payload: bytes, identity: Any) -> bytes | None:
        """The signed frame, advancing the signer's chain; None = leave this event to the SDK.

        Runs without awaiting, so nothing can sign in between: but the SDK may be signing (its
        lock is held or has waiters), may have signed the final frame, or may be told a fixed date.
        """
        sdk, lock, properties = self._sdk_signer, self._lock, self._properties
        if (lock.locked() or getattr(lock, "_waiters", None) or sdk._is_finalized
                or "date" in properties or len(payload) > FAST_LIMIT
                or not isinstance(secret := getattr(identity, "secret_access_key", None), str)):
            return None
        frame, signature = self._signer.frame(
            payload, prior=sdk._prior_signature, secret=secret,
            region=properties["region"], service=properties["service"])
        sdk._prior_signature = signature  # as _sign_payload does, before anything else can sign
        return frame


async def attach(publisher: Any, make_event: MakeEvent, clock: Clock | None = None,
                 find_direct: FindDirect | None = None) -> FastChunkSender | None:
    """A fast sender for this SDK stream's publisher, or None (use the SDK's send) if anything the
    fast path relies on is not exactly as in the pinned SDK. Never raises. `clock`: utc_now.
    `find_direct`: the transport's DirectWriter for the publisher's body provider, if any."""
    try:
        problem = pin_problem(PINNED) or _shape_problem(publisher)
        if problem is None:
            config = publisher._signing_config
            framing = _framing(publisher, config, make_event)
            if framing is None:
                problem = "the SDK's serializer or header encoder writes a different layout"
            else:
                problem = await _probe_problem(publisher, config, framing, make_event)
                if problem is None:
                    return FastChunkSender(publisher, config, Signer(framing, clock or utc_now), make_event,
                                           find_direct)
    except Exception as exc:  # any surprise inside the SDK: its own path still works
        problem = f"{type(exc).__name__}: {exc}"
    log_fallback_once("SDK send", "the SDK's publisher", problem)
    return None




def _shape_problem(publisher: Any) -> str | None:
    """What differs from the pinned SDK's publisher, signer and signing config, if anything."""
    if type(publisher) is not AWSEventPublisher:
        return f"publisher is {type(publisher).__name__}"
    config = getattr(publisher, "_signing_config", None)
    checks: tuple[tuple[bool, str], ...] = (
        (isinstance(config, SigningConfig), "no signing config"),
        (asyncio.iscoroutinefunction(getattr(getattr(publisher, "_writer", None), "write", None)),
         "no async writer"),
        (hasattr(publisher, "_serializer") and isinstance(getattr(publisher, "closed", None), bool),
         "publisher attributes"),
    )
    if config is not None and isinstance(config, SigningConfig):
        signer, properties = config.signer, config.signing_properties
        checks += (
            (type(signer) is AsyncEventSigner, f"signer is {type(signer).__name__}"),
            (isinstance(getattr(signer, "_prior_signature", None), bytes), "signer._prior_signature"),
            (type(getattr(signer, "_signing_lock", None)) is asyncio.Lock, "signer._signing_lock"),
            (getattr(signer, "_is_finalized", None) is False, "signer._is_finalized"),
            (isinstance(getattr(signer, "_event_encoder_cls", None), type), "signer._event_encoder_cls"),
            (isinstance(properties, dict) and isinstance(properties.get("region"), str)
             and isinstance(properties.get("service"), str), "signing properties"),
            (asyncio.iscoroutinefunction(getattr(config.identity_resolver, "get_identity", None)),
             "identity resolver"),
        )
    return next((what for ok, what in checks if not ok), None)


def _framing(publisher: Any, config: Any, make_event: MakeEvent) -> Framing | None:
    """The constant parts of a frame, read off the SDK's own serializer and header encoder."""
    b64 = b64encode(_PROBE)
    make_event(_PROBE).serialize(publisher._serializer)
    probe: EventMessage | None = publisher._serializer.get_result()
    if probe is None:
        return None
    headers, payload = _split(probe.encode())
    if payload.count(b64) != 1:
        return None
    prefix, suffix = payload.split(b64)
    encoder_cls = config.signer._event_encoder_cls
    when = datetime.datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=datetime.UTC)
    encoder = encoder_cls()
    encoder.encode_headers({":date": when, ":chunk-signature": b"\x5a" * 32})
    both: bytes = encoder.get_result()
    millis = _I64.pack(int(when.timestamp() * 1000))
    at = both.find(millis)
    if at < 0 or not both.endswith(b"\x5a" * 32):
        return None
    return Framing(inner_headers=headers, payload_prefix=prefix, payload_suffix=suffix,
                   date_prefix=both[:at], signature_prefix=both[at + 8:-32])


async def _probe_problem(publisher: Any, config: Any, framing: Framing, make_event: MakeEvent) -> str | None:
    """Sign one probe event with a throw-away SDK signer and with ours: same bytes, same chain?"""
    sdk = AsyncEventSigner(initial_signature=_PROBE_PRIOR,
                           event_encoder_cls=config.signer._event_encoder_cls)
    identity = AWSCredentialsIdentity(access_key_id="AKIDPROBE", secret_access_key=_PROBE_SECRET)
    make_event(_PROBE).serialize(publisher._serializer)
    properties = config.signing_properties
    signed = await sdk.sign(event=publisher._serializer.get_result(), identity=identity,
                            properties=properties)  # the signer copies them, never writes them
    expected = signed.encode()
    when = signed.headers[":date"]
    if not isinstance(when, datetime.datetime):
        return "the SDK's :date header is not a datetime"
    ours, prior = Signer(framing, lambda: when).frame(
        _PROBE, prior=_PROBE_PRIOR, secret=_PROBE_SECRET, region=properties["region"],
        service=properties["service"])
    if ours != expected:
        return "a probe frame differs from the SDK's"
    if prior != sdk._prior_signature:
        return "the probe's chained signature differs from the SDK's"
    return None


async def bounded_if_suspends(coro: Coroutine[Any, Any, None], limit_s: float) -> None:
    """Await `coro`, bounding it by `limit_s` only from the moment it first suspends.

    A send whose credentials are cached and whose body buffer has room completes without ever
    suspending, and then a timer per event (asyncio.timeout's call_at and cancel, 31 a second) is
    pure cost. A send that does suspend, on a full buffer after a reset (bedrock-sdk.md gotcha 2)
    or a credential refresh, still raises TimeoutError after `limit_s`, as under asyncio.timeout.
    """
    try:
        first = coro.send(None)
    except StopIteration:
        return
    async with asyncio.timeout(limit_s):
        await _resume(coro, first)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Continue a coroutine already stepped once (what `await` would have done from there on):
    pass what it waits on up to the task, and the task's results and cancellations down to it."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return


__all__ = ["DirectWriter", "FastChunkSender", "FindDirect", "Framing", "Signer", "attach",
           "bounded_if_suspends", "utc_now"]
