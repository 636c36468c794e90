"""The SDK receive fast path (runner/transports/sdk_receive.py) against the SDK's own receiver.

Two BedrockStreams over the same generated response body (split into arbitrary HTTP/2 chunks, then
a clean end or a failed read), each on a real AWSEventReceiver built as smithy's RestJson protocol
builds it (the SDK's JSON codec and Bedrock's output deserializer, reading an AWSCRTHTTPResponse):
one with the fast path attached, one without. Every receive must give the same payload, the same
end, or the same runner error (TransportError text, kind, retryability), event after event.
"""

from __future__ import annotations

import asyncio
import json
from base64 import b64encode
from typing import Any

import pytest
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import _InvokeModelWithBidirectionalStreamOutputDeserializer
from awscrt.aio.http import AIOHttp2ClientStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smithy_aws_event_stream.aio import AWSEventReceiver
from smithy_core.aio.types import AsyncBytesReader
from smithy_http import Fields
from smithy_http.aio.crt import AWSCRTHTTPResponse

from runner.emulator.eventstream import Byte, Long, Short, Timestamp, encode_headers, frame
from runner.errors import TransportError
from runner.transports import sdk_receive
from runner.transports.bedrock import BedrockStream, _chunk_payload
from runner.transports.sdk_receive import FastChunkReceiver, attach_receiver, parse_chunk

CHUNK = {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"}
EXCEPTIONS = ("validationException", "modelStreamErrorException", "throttlingException",
              "internalServerException", "modelTimeoutException", "serviceUnavailableException",
              "noSuchException")


@pytest.fixture(scope="module")
def codec() -> Any:
    """The JSON codec the SDK's RestJson1 protocol gives its event receiver."""
    config = asyncio.run(AsyncBedrockRuntimeConfig.resolve(
        region="us-east-1", aws_access_key_id="AKID", aws_secret_access_key="secret"))
    return config.protocol.payload_codec


class ScriptedStream(AIOHttp2ClientStream):  # type: ignore[misc]  # awscrt ships no type hints
    """awscrt's HTTP/2 client stream with a scripted response body instead of a connection."""

    def __init__(self, chunks: list[bytes], error: Exception | None,
                 gate: asyncio.Event | None = None) -> None:  # no super(): no CRT
        self._chunks = list(chunks)
        self._error = error
        self._gate = gate  # once the chunks before it are read, nothing more until it is set
        self._held = list(chunks[1:]) if gate is not None else []
        if gate is not None:
            self._chunks = chunks[:1]

    async def get_next_response_chunk(self) -> bytes:
        await asyncio.sleep(0)  # a real read suspends
        if not self._chunks and self._gate is not None:
            await self._gate.wait()
            self._chunks, self._held, self._gate = self._held, [], None
        if self._chunks:
            return self._chunks.pop(0)
        if self._error is not None:
            raise self._error
        return b""


class Sdk:
    """What BedrockStream uses of the SDK's duplex stream: `await_output()`."""

    def __init__(self, receiver: AWSEventReceiver[Any]) -> None:
        self.receiver = receiver

    async def await_output(self) -> tuple[None, AWSEventReceiver[Any]]:
        return None, self.receiver


def receiver_for(codec: Any, chunks: list[bytes], error: Exception | None = None,
                 gate: asyncio.Event | None = None) -> AWSEventReceiver[Any]:
    stream = ScriptedStream(chunks, error, gate)
    response = AWSCRTHTTPResponse(status=200, fields=Fields(), stream=stream)
    return AWSEventReceiver(payload_codec=codec, source=AsyncBytesReader(response.body),
                            deserializer=_InvokeModelWithBidirectionalStreamOutputDeserializer().deserialize)


async def outcomes(codec: Any, chunks: list[bytes], error: Exception | None, *,
                   fast: bool) -> tuple[list[tuple[Any, ...]], FastChunkReceiver | None]:
    """What the runner sees from one stream, receive after receive, until its end or an error."""
    stream = BedrockStream(Sdk(receiver_for(codec, chunks, error)))
    await stream.wait_accepted()
    if not fast:
        stream._fast_rx = None
    seen: list[tuple[Any, ...]] = []
    for _ in range(200):
        try:
            data = await stream.receive()
        except TransportError as exc:
            seen.append(("error", str(exc), exc.kind, exc.retryable))
            break
        seen.append(("data", data))
        if data is None:
            break
    return seen, stream.fast_receiver


# --- generated streams ------------------------------------------------------------------------

header_values = st.one_of(
    st.booleans(), st.builds(Byte, st.integers(-128, 127)), st.builds(Short, st.integers(-2**15, 2**15 - 1)),
    st.integers(-2**31, 2**31 - 1), st.builds(Long, st.integers(-2**63, 2**63 - 1)),
    st.binary(max_size=8), st.text(max_size=8), st.builds(Timestamp, st.integers(-2**40, 2**44)),
    st.uuids())
extra_headers = st.dictionaries(st.sampled_from(["x", ":date", "bytes", "message", ":content-type"]),
                                header_values, max_size=3)


@st.composite
def chunk_message(draw: st.DrawFn) -> bytes:
    data = draw(st.binary(max_size=300))
    b64 = b64encode(data)
    layout = draw(st.sampled_from(["compact", "spaced", "spaced", "compact", "newline", "escaped",
                                   "unpadded", "junk", "extra key", "empty", "not json"]))
    payload = {
        "compact": b'{"bytes":"' + b64 + b'"}',
        "spaced": b'{"bytes": "' + b64 + b'"}',
        "newline": b'{"bytes": "' + b64 + b'"}\n',
        "escaped": b'{"bytes":"' + b64.replace(b"/", b"\\/") + b'"}',
        "unpadded": b'{"bytes":"' + b64.rstrip(b"=") + b'"}',
        "junk": b'{"bytes":"' + b64[:3] + b"*" + b64[3:] + b'"}',
        "extra key": b'{"bytes":"' + b64 + b'","other":1}',
        "empty": b"",
        "not json": b'{"bytes":"' + b64,
    }[draw(st.just(layout))]
    headers: dict[str, Any] = dict(CHUNK)
    if draw(st.booleans()):
        headers.update(draw(extra_headers))
        headers[":message-type"] = draw(st.sampled_from(["event", "event", b"event", "Event"]))
        headers[":event-type"] = draw(st.sampled_from(["chunk", "chunk", "chunk", "other", b"chunk"]))
        order = draw(st.permutations(list(headers)))
        headers = {name: headers[name] for name in order}
    raw = encode_headers(headers)
    if draw(st.integers(0, 9)) == 0:  # a header twice (a dict cannot hold that)
        raw += encode_headers({draw(st.sampled_from(list(headers))): "chunk"})
    return frame(raw, payload)


@st.composite
def exception_message(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(EXCEPTIONS))
    headers = {":message-type": "exception", ":exception-type": kind, ":content-type": "application/json"}
    return frame(encode_headers(headers), json.dumps({"message": draw(st.text(max_size=20))}).encode())


@st.composite
def error_message(draw: st.DrawFn) -> bytes:
    headers = {":message-type": "error", ":error-code": draw(st.text(min_size=1, max_size=10)),
               ":error-message": draw(st.text(max_size=20))}
    return frame(encode_headers(headers), b"")


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    message = bytearray(draw(chunk_message()))
    at = draw(st.integers(0, len(message) - 1))
    message[at] ^= draw(st.integers(1, 255))
    return bytes(message)


messages = st.one_of(chunk_message(), chunk_message(), chunk_message(), exception_message(),
                     error_message(), corrupted())


@st.composite
def bodies(draw: st.DrawFn) -> tuple[list[bytes], Exception | None]:
    body = b"".join(draw(st.lists(messages, max_size=8)))
    if draw(st.booleans()) and body:
        body = body[:draw(st.integers(0, len(body)))]  # cut short
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=6)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if body[a:b]]
    error = draw(st.sampled_from([None, None, OSError("connection lost"), RuntimeError("crt failed")]))
    return chunks, error


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies())
def test_the_fast_path_gives_what_the_sdk_gives(codec: Any,
                                                body: tuple[list[bytes], Exception | None]) -> None:
    chunks, error = body
    theirs, none = asyncio.run(outcomes(codec, chunks, error, fast=False))
    ours, fast = asyncio.run(outcomes(codec, chunks, error, fast=True))
    assert none is None and fast is not None, "the fast path did not attach"
    assert ours == theirs


def test_plain_chunk_events_never_reach_the_sdk(codec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [json.dumps({"event": {"n": n}}).encode() for n in range(20)]
    body = b"".join(frame(encode_headers(CHUNK), b'{"bytes": "' + b64encode(e) + b'"}') for e in events)
    # Split mid-message, as HTTP/2 DATA frames may.
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    sdk_receives = 0
    receive = AWSEventReceiver.receive

    async def counted(self: AWSEventReceiver[Any]) -> Any:
        nonlocal sdk_receives
        sdk_receives += 1
        return await receive(self)

    seen, fast = asyncio.run(outcomes(codec, chunks, None, fast=True))
    assert seen == [("data", e) for e in events] + [("data", None)]
    assert fast is not None and fast.fast_events == 20 and fast.handed_over  # the end is the SDK's
    monkeypatch.setattr(AWSEventReceiver, "receive", counted)
    seen, fast = asyncio.run(outcomes(codec, chunks, None, fast=True))
    assert fast is not None and fast.fast_events == 20
    assert sdk_receives == 1 + 12  # the end of the body; the probes run the SDK's receive too


def test_an_exception_event_after_chunks_is_the_sdks_error(codec: Any) -> None:
    chunk = frame(encode_headers(CHUNK), b'{"bytes":"' + b64encode(b"{}") + b'"}')
    error = frame(encode_headers({":message-type": "exception", ":exception-type": "validationException",
                                  ":content-type": "application/json"}), b'{"message":"bad input"}')
    seen, fast = asyncio.run(outcomes(codec, [chunk + error], None, fast=True))
    assert seen == [("data", b"{}"),
                    ("error", "ValidationException: bad input", "ValidationException", False)]
    assert fast is not None and fast.fast_events == 1 and fast.handed_over


def test_parse_chunk_needs_the_whole_message() -> None:
    message = frame(encode_headers(CHUNK), b'{"bytes":"' + b64encode(b"abc") + b'"}')
    for end in range(len(message)):
        assert parse_chunk(message[:end], 0) == sdk_receive.NEED_MORE
    assert parse_chunk(message + b"x", 0) == (b"abc", len(message))


def test_a_different_sdk_version_keeps_the_sdks_receive(codec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sdk_receive.PINNED, "smithy-json", "0.0.1")
    assert asyncio.run(attach_receiver(receiver_for(codec, []), _chunk_payload)) is None


def test_a_receiver_that_has_read_keeps_the_sdks_receive(codec: Any) -> None:
    message = frame(encode_headers(CHUNK), b'{"bytes":"' + b64encode(b"abc") + b'"}')

    async def run() -> FastChunkReceiver | None:
        receiver = receiver_for(codec, [message, message])
        await receiver.receive()
        return await attach_receiver(receiver, _chunk_payload)

    assert asyncio.run(run()) is None


@pytest.mark.parametrize("fast", [False, True], ids=["sdk", "fast"])
def test_after_a_cancelled_receive_the_stream_has_ended(codec: Any, fast: bool) -> None:
    # The SDK's response generator dies with a cancelled read: later receives see the end. (What
    # a cancelled awscrt read was to get is lost anyway: crt.py drops it.) The fast path does alike.
    message = frame(encode_headers(CHUNK), b'{"bytes":"' + b64encode(b"abc") + b'"}')

    async def run() -> tuple[bytes | None, bytes | None]:
        gate = asyncio.Event()
        stream = BedrockStream(Sdk(receiver_for(codec, [message, message], gate=gate)))
        await stream.wait_accepted()
        assert stream.fast_receiver is not None
        if not fast:
            stream._fast_rx = None
        first = await stream.receive()
        task = asyncio.ensure_future(stream.receive())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        return first, await stream.receive()

    assert asyncio.run(run()) == (b"abc", None)
