"""A fast path for the SDK's event receiver: the same output payloads for less CPU (issue 11).

Per output event the SDK's `AWSEventReceiver.receive` spends ~300 µs on a cold cache: four reads
through smithy's AsyncBytesReader and the response's async generator, a generic header decoder, and
a shape deserializer that parses `{"bytes":"<base64>"}` with ijson's pure-Python backend (~130 µs
alone). This module reads the HTTP/2 response body from awscrt itself, splits event-stream messages
and takes a `chunk` event's payload with one base64 decode, handing back exactly the bytes the SDK
would (`InvokeModelWithBidirectionalStreamOutputChunk.value.bytes_`).

Only what is certainly a plain chunk event takes this path: intact CRCs, well-formed headers with
`:message-type` "event" and `:event-type` "chunk" (strings), and a payload that is exactly
`{"bytes":"` (or `{"bytes": "`) + strict base64 + `"}` (base64 holds no quote or backslash, so every
JSON reader sees that one string). At anything else (an exception or error event, an unknown event
type, a malformed or oversized frame, a read that fails, the end of the body) the fast path stops
for good and hands the SDK's receiver the rest of the stream from that message's first byte: its
own `receive` then decodes, raises and ends exactly as it would have.

It relies on private attributes of SDK 0.12.0 (smithy-core 0.9.0, smithy-http 0.6.0,
smithy-aws-event-stream 0.3.0): `attach_receiver` checks each of them, and a probe runs the SDK's
own receive on sample chunk frames and compares; on any difference the stream keeps the SDK's path.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import inspect
import logging
import struct
import uuid
import zlib
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from awscrt.aio.http import AIOHttp2ClientStream
from smithy_aws_event_stream.aio import AWSEventReceiver
from smithy_core.aio.types import AsyncBytesReader
from smithy_http.aio.crt import AWSCRTHTTPResponse

from runner.emulator.eventstream import Byte, Long, Short, Timestamp, encode_headers, frame
from runner.transports.pins import log_fallback_once, pin_problem

log = logging.getLogger("runner.transport")

PINNED: Final = {"aws-sdk-bedrock-runtime": "0.12.0", "smithy-core": "0.9.0", "smithy-http": "0.6.0",
                 "smithy-aws-event-stream": "0.3.0", "smithy-json": "0.3.0"}
# Larger messages (Nova's are a few KB) and header blocks are left to the SDK, which applies its own
# limits (16 MiB, 128 KiB) and errors: below these the fast path can never cross them.
FAST_MAX_MESSAGE: Final = 1 << 20
FAST_MAX_HEADERS: Final = 4096
MAX_HEADER_VALUE: Final = 32 * 1024 - 1  # the SDK's MAX_HEADER_VALUE_BYTE_LENGTH
# Timestamp headers the SDK turns into a datetime without fail (1970 .. ~2109): others go to it.
_MAX_MILLIS: Final = 1 << 42
NEED_MORE: Final = -1  # parse_chunk: the bytes there are only the start of a message
HAND_OVER: Final = -2  # parse_chunk: the message there is not a plain chunk event
_PREFIXES: Final = (b'{"bytes":"', b'{"bytes": "')
_SUFFIX: Final = b'"}'
_PRELUDE_CRC = struct.Struct(">III")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_FIXED: Final = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 9: 16}  # header value widths by type tag
_KNOWN_MAX: Final = 16

# An SDK output item -> its chunk payload, or None if it is not a chunk (bedrock.py's knowledge).
type ChunkPayload = Callable[[object], bytes | None]


def parse_chunk(buf: bytes | bytearray, pos: int, known: set[bytes] | None = None) -> tuple[bytes, int] | int:
    """The payload of the plain chunk event at `buf[pos]` and the position after it; NEED_MORE if
    only its start is there; HAND_OVER if the message there is anything else (or is not certainly
    well-formed). `known`: header blocks already found to be a chunk event's (a cache)."""
    if len(buf) - pos < 12:
        return NEED_MORE
    total, headers_length, prelude_crc = _PRELUDE_CRC.unpack_from(buf, pos)
    if total > FAST_MAX_MESSAGE or headers_length > FAST_MAX_HEADERS or total < headers_length + 16:
        return HAND_OVER
    if zlib.crc32(buf[pos:pos + 8]) != prelude_crc:
        return HAND_OVER
    end = pos + total
    if len(buf) < end:
        return NEED_MORE
    with memoryview(buf) as view:
        if zlib.crc32(view[pos:end - 4]) != _U32.unpack_from(buf, end - 4)[0]:
            return HAND_OVER
        headers_end = pos + 12 + headers_length
        headers = bytes(view[pos + 12:headers_end])
        if known is None or headers not in known:
            if not _chunk_headers(headers):
                return HAND_OVER
            if known is not None and len(known) < _KNOWN_MAX:
                known.add(headers)
        payload_end = end - 4 - len(_SUFFIX)
        for prefix in _PREFIXES:
            start = headers_end + len(prefix)
            if start <= payload_end and buf.startswith(prefix, headers_end) \
                    and buf.startswith(_SUFFIX, payload_end, end - 4):
                try:
                    # Strict: only the base64 alphabet, whole quanta. The SDK's b64decode (not
                    # validating) gives the same bytes for every string this accepts.
                    return b64decode(view[start:payload_end], validate=True), end
                except binascii.Error:
                    return HAND_OVER
    return HAND_OVER


def _chunk_headers(data: bytes) -> bool:
    """Whether this header block certainly decodes (as the SDK's EventHeaderDecoder) to headers
    with no duplicate, `:message-type` "event" and `:event-type` "chunk", both strings."""
    names: set[str] = set()
    message_type = event_type = None
    pos, end = 0, len(data)
    try:
        while pos < end:
            name_end = pos + 1 + data[pos]
            if name_end == pos + 1 or name_end >= end:
                return False
            name = data[pos + 1:name_end].decode("utf-8")
            if name in names:
                return False
            names.add(name)
            tag, pos = data[name_end], name_end + 1
            if tag in (6, 7):
                if pos + 2 > end:
                    return False
                (size,) = _U16.unpack_from(data, pos)
                value_end = pos + 2 + size
                if value_end > end or size > MAX_HEADER_VALUE:
                    return False
                if tag == 7:
                    value = data[pos + 2:value_end].decode("utf-8")
                    if name == ":message-type":
                        message_type = value
                    elif name == ":event-type":
                        event_type = value
                pos = value_end
            elif tag == 8:
                if pos + 8 > end or not 0 <= _I64.unpack_from(data, pos)[0] < _MAX_MILLIS:
                    return False
                pos += 8
            elif (width := _FIXED.get(tag)) is not None:
                pos += width
                if pos > end:
                    return False
            else:
                return False
    except UnicodeDecodeError:
        return False
    return message_type == "event" and event_type == "chunk"


class FastChunkReceiver:
    """Reads one SDK stream's output through the fast path (see the module doc)."""

    def __init__(self, receiver: Any, stream: Any) -> None:
        self._receiver = receiver
        self._stream = stream  # awscrt's HTTP/2 stream: get_next_response_chunk()
        self._buffer: bytes = b""
        self._pos = 0
        self._known: set[bytes] = set()
        self._handed_over = False
        self.fast_events = 0  # for tests and diagnostics: events this path decoded itself

    @property
    def handed_over(self) -> bool:
        """Whether the SDK's receiver reads the rest of the stream."""
        return self._handed_over

    async def receive(self) -> object:
        """The next chunk event's payload (bytes); once the rest of the stream is the SDK's,
        whatever its `receive()` returns (an output item, or None at the end) or raises."""
        if self._handed_over:
            return await self._receiver.receive()
        if self._receiver.closed:
            return None  # as the SDK's receive on a closed receiver
        while True:
            buf, pos = self._buffer, self._pos
            found = parse_chunk(buf, pos, self._known)
            if isinstance(found, tuple):
                payload, self._pos = found
                self.fast_events += 1
                return payload
            if found == HAND_OVER:
                return await self._hand_over(None, ended=False)
            try:
                chunk = await self._stream.get_next_response_chunk()
            except asyncio.CancelledError:
                # As the SDK's reader, whose response generator dies with the cancellation: the
                # bytes held stay, nothing more is read.
                self._give_sdk(None, ended=True)
                raise
            except Exception as exc:  # the SDK sees the same error at the same byte
                return await self._hand_over(exc, ended=True)
            if not chunk:
                return await self._hand_over(None, ended=True)
            # Usually the buffer is empty here (a DATA frame holds whole events): no copy then.
            self._buffer = buf[pos:] + chunk if pos < len(buf) else chunk
            self._pos = 0

    async def _hand_over(self, error: Exception | None, *, ended: bool) -> object:
        self._give_sdk(error, ended=ended)
        return await self._receiver.receive()

    def _give_sdk(self, error: Exception | None, *, ended: bool) -> None:
        """From now on the SDK's receiver reads: what is held from the current message on, then
        the stream's further chunks (or `error`, or the end), through the same kind of reader."""
        self._handed_over = True
        rest = self._buffer[self._pos:]
        self._buffer, self._pos = b"", 0
        self._receiver._source = AsyncBytesReader(_replay(rest, self._stream, error, ended))


async def _replay(rest: bytes, stream: Any, error: Exception | None, ended: bool) -> AsyncIterator[bytes]:
    """`rest`, then what AWSCRTHTTPResponse.chunks would yield from here (or raise)."""
    if rest:
        yield rest
    if error is not None:
        raise error
    if ended:
        return
    while chunk := await stream.get_next_response_chunk():
        yield chunk


async def attach_receiver(receiver: Any, chunk_payload: ChunkPayload) -> FastChunkReceiver | None:
    """A fast receiver for this SDK stream's (unused) receiver, or None (use the SDK's receive) if
    anything the fast path relies on is not exactly as in the pinned SDK. Never raises."""
    try:
        problem = pin_problem(PINNED) or await _probe_problem(receiver, chunk_payload)
        if problem is None:
            # Last, with no await after it: nothing can read the receiver between this check
            # and the fast receiver taking over its stream.
            found = _stream_of(receiver)
            if isinstance(found, str):
                problem = found
            else:
                return FastChunkReceiver(receiver, found)
    except Exception as exc:  # any surprise inside the SDK: its own path still works
        problem = f"{type(exc).__name__}: {exc}"
    log_fallback_once("SDK receive", "the SDK's receiver", problem)
    return None


def _stream_of(receiver: Any) -> Any:
    """The awscrt HTTP/2 stream under a receiver that has read nothing yet, or what differs."""
    if type(receiver) is not AWSEventReceiver:
        return f"receiver is {type(receiver).__name__}"
    if receiver.closed is not False or not callable(getattr(receiver, "_deserializer", None)) \
            or not hasattr(receiver, "_payload_codec") \
            or not isinstance(getattr(receiver, "_is_client_mode", None), bool):
        return "receiver attributes"
    source = getattr(receiver, "_source", None)
    if type(source) is not AsyncBytesReader or source.closed or getattr(source, "_remainder", None) != b"":
        return "receiver source"
    body = getattr(source, "_data", None)
    # smithy's CRT response hands the receiver its `chunks()` generator, not started yet.
    if not inspect.isasyncgen(body) or body.ag_code is not AWSCRTHTTPResponse.chunks.__code__ \
            or inspect.getasyncgenstate(body) != inspect.AGEN_CREATED:
        return "response body is not an unread AWSCRTHTTPResponse.chunks()"
    response = inspect.getasyncgenlocals(body).get("self")
    stream = getattr(response, "_stream", None)
    if not isinstance(response, AWSCRTHTTPResponse) or not isinstance(stream, AIOHttp2ClientStream) \
            or not inspect.iscoroutinefunction(getattr(stream, "get_next_response_chunk", None)):
        return "response stream"
    return stream


# Probes: payload bytes whose base64 has '+', '/' and '=' padding, in both payload layouts, and a
# header block with one of every value type (the SDK must ignore them all for a chunk event).
_PROBES: Final = (b"\xfb\xff\xbf\xfb\xef\x00", b"\xfb\xef", b"")
_PROBE_HEADERS: Final = (
    {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"},
    {":event-type": "chunk", "t": True, "f": False, "b": Byte(-3), "s": Short(7), "i": 9, "l": Long(-1),
     "a": b"\x00bytes", "bytes": "x", "d": Timestamp(1764547200000),
     "u": uuid.UUID(int=5), ":message-type": "event"},
)


@functools.cache  # the same frames for every stream's probe
def _probe_frames() -> tuple[tuple[bytes, bytes], ...]:
    frames = []
    for headers in _PROBE_HEADERS:
        raw = encode_headers(headers)  # type: ignore[arg-type]
        for prefix in _PREFIXES:
            for data in _PROBES:
                frames.append((frame(raw, prefix + b64encode(data) + _SUFFIX), data))
    return tuple(frames)


async def _probe_problem(receiver: Any, chunk_payload: ChunkPayload) -> str | None:
    """Run the SDK's own receive (same codec and deserializer) and ours over the probe frames."""
    for wire, data in _probe_frames():
        sdk = AWSEventReceiver(payload_codec=receiver._payload_codec, source=AsyncBytesReader(wire),
                               deserializer=receiver._deserializer,
                               is_client_mode=receiver._is_client_mode)
        theirs = chunk_payload(await sdk.receive())
        ours = parse_chunk(wire, 0)
        if theirs != data or ours != (data, len(wire)):
            return "a probe chunk decodes differently from the SDK's"
    return None


__all__ = ["HAND_OVER", "NEED_MORE", "FastChunkReceiver", "attach_receiver", "parse_chunk"]
