"""The emulator's event-stream codec: properties, limits, and agreement with smithy's codec."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smithy_aws_event_stream import events as smithy_events

from runner.emulator.eventstream import (
    MAX_HEADERS_LENGTH,
    MAX_PAYLOAD_LENGTH,
    Byte,
    EventStreamDecoder,
    EventStreamError,
    HeaderValue,
    Long,
    Message,
    Short,
    Timestamp,
    decode_message,
    encode_message,
)

header_values: st.SearchStrategy[HeaderValue] = st.one_of(
    st.booleans(),
    st.integers(-(2**7), 2**7 - 1).map(Byte),
    st.integers(-(2**15), 2**15 - 1).map(Short),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Long),
    st.binary(max_size=64),
    st.text(max_size=64),
    st.integers(-(2**63), 2**63 - 1).map(Timestamp),
    st.uuids(),
)
header_names = st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 255)
messages = st.builds(
    Message,
    headers=st.dictionaries(header_names, header_values, max_size=6),
    payload=st.binary(max_size=200),
)


def feed_split(data: bytes, cut: int) -> list[Message]:
    decoder = EventStreamDecoder()
    return decoder.feed(data[:cut]) + decoder.feed(data[cut:])


def feed_bytewise(data: bytes) -> list[Message]:
    decoder = EventStreamDecoder()
    out: list[Message] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    return out


@given(st.lists(messages, min_size=1, max_size=3))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_whole_and_split_everywhere(msgs: list[Message]) -> None:
    data = b"".join(encode_message(m.headers, m.payload) for m in msgs)
    assert EventStreamDecoder().feed(data) == msgs
    assert feed_bytewise(data) == msgs
    for cut in range(len(data) + 1):
        assert feed_split(data, cut) == msgs


def _decode_or_codec_error(feed: list[bytes]) -> None:
    decoder = EventStreamDecoder()
    try:
        for part in feed:
            for message in decoder.feed(part):
                assert isinstance(message, Message)
    except EventStreamError:
        pass


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_any_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    _decode_or_codec_error([data])
    _decode_or_codec_error([data[i : i + 1] for i in range(len(data))])
    for cut in range(len(data) + 1):
        _decode_or_codec_error([data[:cut], data[cut:]])


def _frame(headers_block: bytes, payload: bytes = b"") -> bytes:
    """A frame with valid lengths and CRCs around an arbitrary header block."""
    total = 16 + len(headers_block) + len(payload)
    prelude = struct.pack(">II", total, len(headers_block))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers_block + payload
    return body + struct.pack(">I", zlib.crc32(body))


@given(st.binary(max_size=120), st.binary(max_size=40))
@settings(max_examples=300)
def test_valid_crcs_around_garbage_headers(headers_block: bytes, payload: bytes) -> None:
    # Random bytes almost never pass the CRCs; this reaches the header parser with garbage.
    data = _frame(headers_block, payload)
    _decode_or_codec_error([data])
    for cut in range(0, len(data) + 1, 7):
        _decode_or_codec_error([data[:cut], data[cut:]])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_frame(b"\x00"), "empty header name"),
        (_frame(b"\x01a\x0a"), "unknown header value type"),
        (_frame(b"\x01a\x07\x00\x05ab"), "truncated"),
        (_frame(b"\x01a\x04\x00"), "truncated"),
        (_frame(b"\x01a\x07\x00\x01\xff"), "not UTF-8"),
    ],
)
def test_malformed_headers(data: bytes, reason: str) -> None:
    with pytest.raises(EventStreamError, match=reason):
        EventStreamDecoder().feed(data)


def test_crc_mismatches_and_bad_lengths() -> None:
    good = encode_message({":event-type": "chunk"}, b"{}")
    bad_prelude = bytearray(good)
    bad_prelude[8] ^= 1
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(bad_prelude))
    bad_body = bytearray(good)
    bad_body[-5] ^= 1
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bytes(bad_body))
    too_small = struct.pack(">II", 15, 0)
    with pytest.raises(EventStreamError, match="too small"):
        EventStreamDecoder().feed(too_small + struct.pack(">I", zlib.crc32(too_small)))


def test_limits_are_enforced_from_the_prelude_alone() -> None:
    # The decoder must refuse oversize messages before buffering them.
    big_headers = struct.pack(">II", 16 + MAX_HEADERS_LENGTH + 1, MAX_HEADERS_LENGTH + 1)
    with pytest.raises(EventStreamError, match="headers length"):
        EventStreamDecoder().feed(big_headers + struct.pack(">I", zlib.crc32(big_headers)))
    big_payload = struct.pack(">II", 16 + MAX_PAYLOAD_LENGTH + 1, 0)
    with pytest.raises(EventStreamError, match="payload length"):
        EventStreamDecoder().feed(big_payload + struct.pack(">I", zlib.crc32(big_payload)))
    with pytest.raises(EventStreamError):
        encode_message({}, b"x" * (MAX_PAYLOAD_LENGTH + 1))
    with pytest.raises(EventStreamError):
        encode_message({"a": Byte(128)})


def test_decoder_stays_failed() -> None:
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError):
        decoder.feed(b"\x00" * 16)
    with pytest.raises(EventStreamError):
        decoder.feed(encode_message({}, b""))


def test_agrees_with_smithy_codec_both_ways() -> None:
    when = dt.datetime(2026, 11, 21, 19, 8, 56, 123000, tzinfo=dt.UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    smithy_msg = smithy_events.EventMessage(
        headers={
            ":message-type": "event",
            "t": True,
            "f": False,
            "b": smithy_events.Byte(-3),
            "s": smithy_events.Short(300),
            "i": 70000,
            "l": smithy_events.Long(2**40),
            "raw": b"\x00\x01",
            ":date": when,
            "id": ident,
        },
        payload=b'{"bytes":"e30="}',
    )
    ours = Message(
        headers={
            ":message-type": "event",
            "t": True,
            "f": False,
            "b": Byte(-3),
            "s": Short(300),
            "i": 70000,
            "l": Long(2**40),
            "raw": b"\x00\x01",
            ":date": Timestamp.from_datetime(when),
            "id": ident,
        },
        payload=b'{"bytes":"e30="}',
    )
    assert smithy_msg.encode() == encode_message(ours.headers, ours.payload)
    assert decode_message(smithy_msg.encode()) == ours
    assert ours.headers[":date"] == Timestamp(int(when.timestamp() * 1000))
    assert Timestamp.from_datetime(when).to_datetime() == when
