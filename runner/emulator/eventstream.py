"""AWS event-stream framing (`application/vnd.amazon.eventstream`), written from the spec.

Deliberately independent of smithy's codec so that the SDK's encoder and decoder are checked
against a second implementation. Sans-IO: `encode_message` returns bytes, `EventStreamDecoder.feed`
takes bytes and returns whole messages.

    message := prelude headers payload message_crc
    prelude := total_length u32 | headers_length u32 | prelude_crc u32 (CRC32 of the first 8 bytes)
    header  := name_len u8 | name (UTF-8) | type u8 | value
    message_crc := CRC32 of everything before it
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

MAX_HEADERS_LENGTH: Final = 128 * 1024
MAX_PAYLOAD_LENGTH: Final = 16 * 1024 * 1024
PRELUDE_LENGTH: Final = 12
CRC_LENGTH: Final = 4
MIN_MESSAGE_LENGTH: Final = PRELUDE_LENGTH + CRC_LENGTH
MAX_MESSAGE_LENGTH: Final = MIN_MESSAGE_LENGTH + MAX_HEADERS_LENGTH + MAX_PAYLOAD_LENGTH

# Header value type tags.
_TRUE, _FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)


class EventStreamError(Exception):
    """The bytes are not a valid event-stream message (or a message could not be encoded)."""


@dataclass(frozen=True, slots=True)
class Byte:
    """An i8 header value (type 2)."""

    value: int


@dataclass(frozen=True, slots=True)
class Short:
    """An i16 header value (type 3)."""

    value: int


@dataclass(frozen=True, slots=True)
class Long:
    """An i64 header value (type 5). A plain `int` encodes as i32 (type 4)."""

    value: int


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A timestamp header value (type 8): milliseconds since the epoch, as i64."""

    millis: int

    @classmethod
    def from_datetime(cls, when: datetime) -> Timestamp:
        return cls(int(when.timestamp() * 1000))

    def to_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.millis / 1000, tz=UTC)


# bool → 0/1, int → i32, bytes → 6, str → 7, uuid.UUID → 9.
HeaderValue = bool | Byte | Short | int | Long | bytes | str | Timestamp | uuid.UUID


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""


# --- encoding ---------------------------------------------------------------------------------

_PRELUDE: Final = struct.Struct(">II")
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")
_I64: Final = struct.Struct(">q")
_INT_FORMATS: Final = {_BYTE: ">b", _SHORT: ">h", _INT: ">i", _LONG: ">q", _TIMESTAMP: ">q"}


def _encode_value(value: HeaderValue) -> bytes:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return bytes([_TRUE if value else _FALSE])
    if isinstance(value, int):
        return _pack_int(_INT, value)
    if isinstance(value, Byte):
        return _pack_int(_BYTE, value.value)
    if isinstance(value, Short):
        return _pack_int(_SHORT, value.value)
    if isinstance(value, Long):
        return _pack_int(_LONG, value.value)
    if isinstance(value, Timestamp):
        return _pack_int(_TIMESTAMP, value.millis)
    if isinstance(value, uuid.UUID):
        return bytes([_UUID]) + value.bytes
    if isinstance(value, bytes):
        return _pack_sized(_BYTES, value)
    if isinstance(value, str):
        return _pack_sized(_STRING, value.encode("utf-8"))
    raise EventStreamError(f"unsupported header value type {type(value).__name__}")


def _pack_int(tag: int, value: int) -> bytes:
    try:
        return bytes([tag]) + struct.pack(_INT_FORMATS[tag], value)
    except struct.error as exc:
        raise EventStreamError(f"header value {value} out of range for type {tag}") from exc


def _pack_sized(tag: int, data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise EventStreamError(f"header value of {len(data)} bytes exceeds 65535")
    return struct.pack(">BH", tag, len(data)) + data


def encode_headers(headers: dict[str, HeaderValue]) -> bytes:
    parts: list[bytes] = []
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        if not 1 <= len(raw_name) <= 255:
            raise EventStreamError(f"header name must be 1..255 bytes, got {len(raw_name)}")
        parts.append(bytes([len(raw_name)]) + raw_name + _encode_value(value))
    return b"".join(parts)


def encode_message(headers: dict[str, HeaderValue], payload: bytes = b"") -> bytes:
    """Frame one message. Raises EventStreamError if it breaks the spec's limits."""
    raw_headers = encode_headers(headers)
    if len(raw_headers) > MAX_HEADERS_LENGTH:
        raise EventStreamError(f"headers of {len(raw_headers)} bytes exceed {MAX_HEADERS_LENGTH}")
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise EventStreamError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    return frame(raw_headers, payload)


def frame(raw_headers: bytes, payload: bytes) -> bytes:
    """One message from headers already encoded (`encode_headers`) and a payload within the
    limits. The message CRC runs on over the parts, so the body is joined only once."""
    total = MIN_MESSAGE_LENGTH + len(raw_headers) + len(payload)
    lengths = _PRELUDE.pack(total, len(raw_headers))
    prelude = lengths + _U32.pack(zlib.crc32(lengths))
    crc = zlib.crc32(payload, zlib.crc32(raw_headers, zlib.crc32(prelude)))
    return b"".join((prelude, raw_headers, payload, _U32.pack(crc)))


# --- decoding ---------------------------------------------------------------------------------


class _Reader:
    """Cursor over one message's header block; every short read is an EventStreamError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise EventStreamError("truncated header")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return int(value)


def _decode_value(reader: _Reader, tag: int) -> HeaderValue:
    match tag:
        case 0:
            return True
        case 1:
            return False
        case 2:
            return Byte(reader.unpack(">b"))
        case 3:
            return Short(reader.unpack(">h"))
        case 4:
            return reader.unpack(">i")
        case 5:
            return Long(reader.unpack(">q"))
        case 6:
            return reader.take(reader.unpack(">H"))
        case 7:
            try:
                return reader.take(reader.unpack(">H")).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EventStreamError("string header value is not UTF-8") from exc
        case 8:
            return Timestamp(reader.unpack(">q"))
        case 9:
            return uuid.UUID(bytes=reader.take(16))
    raise EventStreamError(f"unknown header value type {tag}")


def decode_headers(data: bytes) -> dict[str, HeaderValue]:
    """The header block's values. Strings, byte arrays and timestamps (every header Bedrock's
    input frames carry) are read inline; the other types go through `_decode_value`."""
    headers: dict[str, HeaderValue] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            name_len = data[pos]
            name_end = pos + 1 + name_len
            if name_len == 0 or name_end >= end:
                break  # the general reader below words the error
            name = data[pos + 1:name_end].decode("utf-8")
            tag = data[name_end]
            if tag in (_STRING, _BYTES):
                (size,) = _U16.unpack_from(data, name_end + 1)
                value_end = name_end + 3 + size
                if value_end > end:
                    break
                raw = data[name_end + 3:value_end]
                headers[name] = raw.decode("utf-8") if tag == _STRING else raw
                pos = value_end
            elif tag == _TIMESTAMP:  # the chunk signature's :date
                (millis,) = _I64.unpack_from(data, name_end + 1)
                headers[name] = Timestamp(millis)
                pos = name_end + 9
            else:
                reader = _Reader(data)
                reader.pos = name_end + 1
                headers[name] = _decode_value(reader, tag)
                pos = reader.pos
        else:
            return headers
    except (UnicodeDecodeError, struct.error):
        pass
    return _decode_headers_slowly(data)


def _decode_headers_slowly(data: bytes) -> dict[str, HeaderValue]:
    reader = _Reader(data)
    headers: dict[str, HeaderValue] = {}
    while reader.pos < len(data):
        name_len = reader.unpack(">B")
        if name_len == 0:
            raise EventStreamError("empty header name")
        try:
            name = reader.take(name_len).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventStreamError("header name is not UTF-8") from exc
        headers[name] = _decode_value(reader, reader.unpack(">B"))
    return headers


def decode_message(data: bytes) -> Message:
    """Decode exactly one whole message."""
    message, end = _parse(data, 0)
    if message is None or end != len(data):
        count = 0 if message is None else 1
        raise EventStreamError(f"expected exactly one message, got {count} (+{len(data) - end} B)")
    return message


_PRELUDE_CRC: Final = struct.Struct(">III")


def _parse(buf: bytes | bytearray, pos: int) -> tuple[Message | None, int]:
    """The whole message starting at `buf[pos]` and the position after it; (None, pos) when the
    bytes there are only the start of one. Reads in place: no copy of the frame first."""
    if len(buf) - pos < PRELUDE_LENGTH:
        return None, pos
    total, headers_len, prelude_crc = _PRELUDE_CRC.unpack_from(buf, pos)
    with memoryview(buf) as view:
        if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
            raise EventStreamError("prelude CRC mismatch")
        if headers_len > MAX_HEADERS_LENGTH:
            raise EventStreamError(f"headers length {headers_len} exceeds {MAX_HEADERS_LENGTH}")
        payload_len = total - MIN_MESSAGE_LENGTH - headers_len
        if payload_len < 0:
            raise EventStreamError(f"total length {total} too small for {headers_len} B of headers")
        if payload_len > MAX_PAYLOAD_LENGTH:
            raise EventStreamError(f"payload length {payload_len} exceeds {MAX_PAYLOAD_LENGTH}")
        end = pos + total
        if len(buf) < end:
            return None, pos
        (message_crc,) = _U32.unpack_from(buf, end - CRC_LENGTH)
        if zlib.crc32(view[pos : end - CRC_LENGTH]) != message_crc:
            raise EventStreamError("message CRC mismatch")
    headers_end = pos + PRELUDE_LENGTH + headers_len
    # bytes() copies only a bytearray buffer's slices (the message keeps immutable ones).
    raw_headers = bytes(buf[pos + PRELUDE_LENGTH : headers_end])
    payload = bytes(buf[headers_end : end - CRC_LENGTH])
    return Message(headers=decode_headers(raw_headers), payload=payload), end


class EventStreamDecoder:
    """Incremental decoder: feed any split of the byte stream, get whole messages back.

    After an EventStreamError the stream is unrecoverable (framing is lost); the decoder stays
    failed and raises again on every later feed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._failed: EventStreamError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        if self._failed is not None:
            raise self._failed
        # Usually `data` holds whole messages (one HTTP/2 DATA frame per event): read them from
        # `data` itself; only a partial message waits in the buffer for the rest.
        buf: bytes | bytearray = data
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        messages: list[Message] = []
        pos = 0
        try:
            while True:
                message, pos = _parse(buf, pos)
                if message is None:
                    break
                messages.append(message)
        except EventStreamError as exc:
            self._failed = exc
            raise
        if buf is self._buffer:
            del self._buffer[:pos]
        elif pos < len(data):
            self._buffer += data[pos:]
        return messages
