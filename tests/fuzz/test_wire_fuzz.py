"""The wire decoders, fed generated and mutated input: each answers with its result or its
documented error, within the time and memory budget.

* runner/emulator/eventstream.py: frames from the encoder with bit flips, truncations, wrong
  lengths and CRCs (recomputed or not, so every later check is reached too), huge declared
  lengths, random bytes, any split of the stream -> Message or EventStreamError.
* runner/emulator/validation.py: input-event sequences with one event mutated (data or bytes,
  deep nesting, huge numbers) -> InputEvent or NovaValidationError.
* runner/emulator/sigv4.py: request headers and chunk-signature messages with mutated values
  -> VerifiedRequest / payload or SignatureError.
* runner/protocol/codec.py (the runner's side): output events mutated -> OutputEvent or
  RemoteProtocolError.
"""

from __future__ import annotations

import itertools
import json
import struct
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from runner.emulator.eventstream import (
    MAX_MESSAGE_LENGTH,
    Byte,
    EventStreamDecoder,
    EventStreamError,
    Long,
    Message,
    Short,
    Timestamp,
    decode_message,
    encode_message,
)
from runner.emulator.outputs import INTERRUPTED_MARKER
from runner.emulator.sigv4 import ChunkVerifier, Credentials, SignatureError, verify_request
from runner.emulator.validation import InputEvent, InputValidator, NovaValidationError
from runner.errors import RemoteProtocolError
from runner.protocol.codec import decode_output
from runner.protocol.events import OutputEvent
from tests.emulator import fakes
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.invariant import outcome
from tests.fuzz.mutate import SPECIAL_VALUES, Raw, mutate_data

# --- event-stream frames -------------------------------------------------------------------------

_HEADER_VALUES = st.one_of(
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.builds(Byte, st.integers(-128, 127)),
    st.builds(Short, st.integers(-(2**15), 2**15 - 1)),
    st.builds(Long, st.integers(-(2**63), 2**63 - 1)),
    st.binary(max_size=64),
    st.text(max_size=64),
    st.builds(Timestamp, st.integers(-(2**63), 2**63 - 1)),
    st.builds(uuid.UUID, st.uuids().map(str)),
)
_HEADERS = st.dictionaries(
    st.text(min_size=1, max_size=20).filter(lambda n: len(n.encode()) <= 255), _HEADER_VALUES, max_size=5
)
FRAMES = st.builds(encode_message, _HEADERS, st.binary(max_size=512))


def _with_crcs(frame: bytearray) -> bytes:
    """Recompute both CRCs, so a mutation of the lengths or headers reaches the later checks."""
    if len(frame) >= 12:
        frame[8:12] = struct.pack(">I", zlib.crc32(bytes(frame[:8])))
    if len(frame) >= 16:
        frame[-4:] = struct.pack(">I", zlib.crc32(bytes(frame[:-4])))
    return bytes(frame)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(FRAMES))
    action = draw(
        st.sampled_from(
            ["flip", "truncate", "total", "headers_len", "huge", "random", "header_bytes", "extend", "none"]
        )
    )
    fix_crc = draw(st.booleans())
    if action == "flip":
        for _ in range(draw(st.integers(1, 4))):
            bit = draw(st.integers(0, len(frame) * 8 - 1))
            frame[bit // 8] ^= 1 << (bit % 8)
    elif action == "truncate":
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    elif action == "total":
        frame[0:4] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    elif action == "headers_len":
        frame[4:8] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    elif action == "huge":  # a declared 4 GiB message must not allocate 4 GiB
        frame[0:4] = struct.pack(">I", draw(st.sampled_from([2**32 - 1, MAX_MESSAGE_LENGTH + 1, 2**31])))
        fix_crc = True
    elif action == "random":
        return draw(st.binary(max_size=256))
    elif action == "header_bytes" and len(frame) > 16:
        headers_len = struct.unpack(">I", bytes(frame[4:8]))[0]
        if headers_len:
            at = 12 + draw(st.integers(0, headers_len - 1))
            frame[at] = draw(st.integers(0, 255))
        fix_crc = True
    elif action == "extend":
        frame += draw(st.binary(min_size=1, max_size=64))
    return _with_crcs(frame) if fix_crc else bytes(frame)


@fuzz_settings(300)
@given(
    data=st.lists(mutated_frames(), min_size=1, max_size=4), cuts=st.lists(st.integers(0, 4096), max_size=6)
)
def test_the_event_stream_decoder_returns_messages_or_an_event_stream_error(
    data: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(data)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = EventStreamDecoder()

    def feed_all() -> list[Message]:
        got: list[Message] = []
        for start, end in itertools.pairwise(points):
            got += decoder.feed(stream[start:end])
        return got

    result = outcome(feed_all, allowed=(EventStreamError,), memory=64 * 2**20)
    if isinstance(result, EventStreamError):  # the decoder stays failed
        assert isinstance(outcome(lambda: decoder.feed(b"x"), allowed=(EventStreamError,)), EventStreamError)
    assert decoder.buffered <= MAX_MESSAGE_LENGTH
    one = outcome(lambda: decode_message(stream), allowed=(EventStreamError,), memory=64 * 2**20)
    assert isinstance(one, Message | EventStreamError)


@fuzz_settings(100)
@given(headers=_HEADERS, payload=st.binary(max_size=2048), cuts=st.lists(st.integers(0, 4096), max_size=5))
def test_valid_frames_round_trip_under_any_split(
    headers: dict[str, Any], payload: bytes, cuts: list[int]
) -> None:
    frame = encode_message(headers, payload)
    stream = frame * 2
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = EventStreamDecoder()
    got: list[Message] = []
    for start, end in itertools.pairwise(points):
        got += decoder.feed(stream[start:end])
    assert got == [Message(headers, payload)] * 2 and decoder.buffered == 0


def test_a_declared_4_gib_frame_is_refused_from_its_prelude() -> None:
    prelude = struct.pack(">II", 2**32 - 1, 0)
    decoder = EventStreamDecoder()
    result = outcome(
        lambda: decoder.feed(prelude + struct.pack(">I", zlib.crc32(prelude))),
        allowed=(EventStreamError,),
        memory=16 * 2**20,
    )
    assert isinstance(result, EventStreamError) and "exceeds" in str(result)


# --- input events (the emulator's validator) -------------------------------------------------------


def _sequences() -> list[list[dict[str, Any]]]:
    audio = fakes.audio_input(b"\x00\x01" * 160)
    return [
        [*fakes.opening(), fakes.audio_start(), audio, audio, fakes.content_end("audio")],
        [
            *fakes.opening(tools=("lookup",)),
            fakes.audio_start(),
            fakes.text_start("t", "USER", True),
            fakes.text_input("t", "Hello"),
            fakes.content_end("t"),
        ],
        [
            fakes.session_start(),
            fakes.prompt_start(),
            fakes.text_start("sys", "SYSTEM"),
            fakes.text_input("sys", "Hi"),
            fakes.content_end("sys"),
            fakes.text_start("h", "USER"),
            fakes.text_input("h", "earlier"),
            fakes.content_end("h"),
            fakes.audio_start(),
            audio,
            fakes.ev("promptEnd", promptName=fakes.PROMPT),
            fakes.ev("sessionEnd"),
        ],
    ]


def _json_with_raw(value: Any) -> str:
    """JSON text where Raw values are written as they are (a 5,000-digit number, NaN, nesting)."""
    if isinstance(value, Raw):
        return {".nan": "NaN", ".NaN": "NaN", ".inf": "Infinity", "-.inf": "-Infinity"}.get(
            value.text, value.text
        )
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_json_with_raw(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_with_raw(v) for v in value) + "]"
    return json.dumps(value)


@st.composite
def mutated_payload(draw: st.DrawFn, event: dict[str, Any]) -> bytes:
    kind = draw(st.sampled_from(["data", "bytes", "deep", "number"]))
    if kind == "data":
        return _json_with_raw(draw(mutate_data(event))).encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.sampled_from([100, 1000, 100_000]))
        return b'{"event": {"sessionStart": ' + b"[" * depth + b"]" * depth + b"}}"
    if kind == "number":
        number = draw(st.sampled_from(["9" * 5000, "1e999", "NaN", "-Infinity", "1" + "0" * 400 + ".5"]))
        return json.dumps(event).replace("16000", number).replace("1024", number).encode()
    raw = json.dumps(event).encode()
    at = draw(st.integers(0, len(raw)))
    return (
        raw[:at]
        + draw(st.sampled_from([b"\x00", b"\xff", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"}", b'"']))
        + raw[at + draw(st.integers(0, 2)) :]
    )


@st.composite
def event_sequences(draw: st.DrawFn) -> list[bytes]:
    events = draw(st.sampled_from(_sequences()))
    index = draw(st.integers(0, len(events) - 1))
    payloads = [json.dumps(e).encode() for e in events]
    payloads[index] = draw(mutated_payload(events[index]))
    if draw(st.booleans()):
        payloads.insert(
            draw(st.integers(0, len(payloads))), payloads[draw(st.integers(0, len(payloads) - 1))]
        )
    return payloads


@fuzz_settings(200)
@given(payloads=event_sequences(), model=st.sampled_from([fakes.V1, "amazon.nova-2-sonic-v1:0", "x"]))
def test_the_input_validator_accepts_or_names_the_violation(payloads: list[bytes], model: str) -> None:
    validator = InputValidator(model)
    for payload in payloads:
        result = outcome(lambda p=payload, v=validator: v.check(p), allowed=(NovaValidationError,))
        if isinstance(result, NovaValidationError):
            assert result.message.startswith(result.reason) and result.index >= 1
            return
        assert isinstance(result, InputEvent)


def test_deep_json_and_huge_integers_are_invalid_input_not_a_crash() -> None:
    # Found by the validator fuzz target: RecursionError and int()'s digit-limit ValueError escaped.
    for payload in (b"[" * 100_000, b"9" * 5000, b'{"event": {"sessionStart": ' + b"[" * 50_000 + b"}}"):
        validator = InputValidator("amazon.nova-2-sonic-v1:0")
        result = outcome(lambda p=payload, v=validator: v.check(p), allowed=(NovaValidationError,))
        assert isinstance(result, NovaValidationError) and result.event == "?"


def test_a_lone_surrogate_in_an_input_event_is_invalid_input_not_a_crash() -> None:
    # Found by the long run: json.loads(bytes) decodes with "surrogatepass", and a \\ud800 escape
    # is valid JSON; the history size check's str.encode() then raised UnicodeEncodeError.
    opening = [json.dumps(e).encode() for e in fakes.opening()]
    typed = [fakes.audio_start(), fakes.text_start("t", "USER", True)]
    text = json.dumps(fakes.text_input("t", "Hello")).encode()
    for bad in (text.replace(b"Hello", b"\xed\xa0\x80Hello"), text.replace(b"Hello", b"\\ud800Hello"),
                text.replace(b'"content"', b'"\\udfffcontent"')):
        validator = InputValidator("amazon.nova-2-sonic-v1:0")
        for payload in [*opening, *(json.dumps(e).encode() for e in typed)]:
            validator.check(payload)
        result = outcome(lambda p=bad, v=validator: v.check(p), allowed=(NovaValidationError,))
        assert isinstance(result, NovaValidationError), bad


# --- SigV4 -------------------------------------------------------------------------------------------

_NOW = datetime(2026, 11, 21, 19, 8, 56, tzinfo=UTC)
_HEADER_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "AWS4-HMAC-SHA256",
            "20261121T190856Z",
            "x" * 5000,
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/us-east-1/bedrock/"
            "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "a" * 64,
            "99999999T999999Z",
            "20261121T190856",
            "٢٠٢٦١١٢١T190856Z",
        ]
    ),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200),
)


@fuzz_settings(200)
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "authorization",
                "x-amz-date",
                "host",
                "x-amz-security-token",
                "x-amz-content-sha256",
                "content-type",
            ]
        ),
        _HEADER_TEXT,
    ),
    path=st.one_of(
        st.just("/model/m/invoke-with-bidirectional-stream?a=b&c"),
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=100),
    ),
    any_credentials=st.booleans(),
)
def test_request_verification_accepts_or_refuses_with_a_signature_error(
    headers: dict[str, str], path: str, any_credentials: bool
) -> None:
    credentials = None if any_credentials else Credentials("AKIDEXAMPLE", "secret")
    result = outcome(
        lambda: verify_request("POST", path, headers, credentials, region="us-east-1", now=_NOW),
        allowed=(SignatureError,),
    )
    if isinstance(result, SignatureError):
        assert result.error_type.endswith("Exception") and result.message


@fuzz_settings(200)
@given(
    headers=_HEADERS,
    payload=st.binary(max_size=64),
    date=st.one_of(st.builds(Timestamp, st.integers(-(2**63), 2**63 - 1)), _HEADER_VALUES),
    signature=st.one_of(st.binary(min_size=32, max_size=32), _HEADER_VALUES),
    checked=st.booleans(),
)
def test_chunk_verification_accepts_or_refuses_with_a_signature_error(
    headers: dict[str, Any], payload: bytes, date: Any, signature: Any, checked: bool
) -> None:
    verifier = ChunkVerifier("0" * 64, "secret" if checked else None, region="us-east-1")
    message = Message({**headers, ":date": date, ":chunk-signature": signature}, payload)
    result = outcome(lambda: verifier.verify(message), allowed=(SignatureError,))
    assert isinstance(result, bytes | SignatureError)


def test_a_chunk_dated_outside_datetimes_years_is_a_signature_error() -> None:
    # Found by the chunk fuzz target: Timestamp.to_datetime() raised ValueError for an i64 far
    # outside year 1..9999, which escaped the verifier (and the stream's data handler).
    for millis in (2**63 - 1, -(2**63), 10**15):
        verifier = ChunkVerifier("0" * 64, "secret", region="us-east-1")
        message = Message({":date": Timestamp(millis), ":chunk-signature": b"\x00" * 32}, b"{}")
        result = outcome(lambda m=message, v=verifier: v.verify(m), allowed=(SignatureError,))
        assert isinstance(result, SignatureError) and result.error_type == "InvalidSignatureException"


# --- output events (the runner's decoder) ------------------------------------------------------------

_OUTPUTS: list[dict[str, Any]] = [
    {"event": {"completionStart": {"sessionId": "s", "promptName": "p", "completionId": "c"}}},
    {
        "event": {
            "contentStart": {
                "contentId": "1",
                "type": "TEXT",
                "role": "ASSISTANT",
                "completionId": "c",
                "additionalModelFields": '{"generationStage":"SPECULATIVE"}',
            }
        }
    },
    {"event": {"textOutput": {"contentId": "1", "role": "ASSISTANT", "content": INTERRUPTED_MARKER}}},
    {"event": {"audioOutput": {"contentId": "2", "content": "AAAA"}}},
    {"event": {"toolUse": {"contentId": "3", "toolName": "t", "toolUseId": "u", "content": '{"a": 1}'}}},
    {"event": {"contentEnd": {"contentId": "1", "type": "TEXT", "stopReason": "END_TURN"}}},
    {
        "event": {
            "usageEvent": {
                "details": {"delta": {"input": {"speechTokens": 1}}, "total": {}},
                "totalInputTokens": 1,
                "totalOutputTokens": 2,
                "totalTokens": 3,
            }
        }
    },
    {"event": {"completionEnd": {"stopReason": "END_TURN"}}},
]


@fuzz_settings(200)
@given(
    payload=st.one_of(
        st.sampled_from(_OUTPUTS).flatmap(mutated_payload),
        st.sampled_from(_OUTPUTS)
        .flatmap(mutate_data)
        .map(lambda d: _json_with_raw(d).encode("utf-8", "surrogatepass")),
        st.binary(max_size=256),
        st.sampled_from(
            [
                json.dumps(
                    {
                        "event": {
                            "toolUse": {
                                "contentId": "3",
                                "toolName": "t",
                                "toolUseId": "u",
                                "content": "[" * 50_000,
                            }
                        }
                    }
                ).encode(),
                json.dumps(
                    {
                        "event": {
                            "contentStart": {
                                "contentId": "1",
                                "type": "TEXT",
                                "role": "USER",
                                "additionalModelFields": "{" * 50_000,
                            }
                        }
                    }
                ).encode(),
            ]
        ),
    )
)
def test_the_runner_decodes_output_events_or_raises_remote_protocol_error(payload: bytes) -> None:
    result = outcome(lambda: decode_output(payload), allowed=(RemoteProtocolError,))
    assert isinstance(result, OutputEvent | RemoteProtocolError)


def test_special_values_are_json_writable() -> None:
    # The mutators' special values must reach the decoders as intended (not as a crash in the test).
    for value in SPECIAL_VALUES:
        _json_with_raw({"x": value})
