"""The SDK send fast path (runner/transports/sdk_send.py) against the SDK's own event publisher.

Byte-identical frames and the same signer state, event after event: two real AWSEventPublishers
(the SDK's codec, signer and header encoder) with the same seed signature and credentials, one
sending through the SDK, the other through the fast path, on the same (patched) clock. Any change
to an internal the fast path relies on must make it step aside for the SDK's own send.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import types
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_signers import AsyncEventSigner, signers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.aio import AWSEventPublisher, SigningConfig
from smithy_aws_event_stream.events import EventHeaderEncoder
from smithy_core.aio.types import AsyncBytesProvider

from runner.errors import TransportError
from runner.transports import bedrock, pins, sdk_send
from runner.transports.bedrock import BedrockStream, _chunk
from runner.transports.sdk_send import FastChunkSender, attach, bounded_if_suspends

SEED = b"7f1c" * 16  # the request's Authorization signature, as the chain's first prior
REGION = "us-east-1"
SECRETS = ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "second+secret/after-a-refresh")


@pytest.fixture(scope="module")
def codec() -> Any:
    """The JSON codec the SDK's RestJson1 protocol gives its event publisher."""
    config = asyncio.run(AsyncBedrockRuntimeConfig.resolve(
        region=REGION, aws_access_key_id="AKID", aws_secret_access_key=SECRETS[0]))
    return config.protocol.payload_codec


class Collect:
    """The publisher's body writer: keeps each frame written."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.frames.append(data)


class Resolver:
    """An identity resolver whose credentials the test changes between events (a refresh)."""

    def __init__(self) -> None:
        self.identity = AWSCredentialsIdentity(access_key_id="AKID", secret_access_key=SECRETS[0])
        self.calls = 0

    async def get_identity(self, *, properties: Any) -> AWSCredentialsIdentity:
        self.calls += 1
        return self.identity


def make_publisher(codec: Any, resolver: Resolver,
                   **properties: Any) -> tuple[AWSEventPublisher[Any], Collect]:
    """A publisher built as smithy_aws_core's RestJson protocol builds it for a signed stream."""
    writer = Collect()
    config = SigningConfig(
        signer=AsyncEventSigner(initial_signature=SEED, event_encoder_cls=EventHeaderEncoder),
        signing_properties={"region": REGION, "service": "bedrock", **properties},  # type: ignore[typeddict-item]
        identity_resolver=resolver, identity_properties={})  # type: ignore[arg-type]
    return AWSEventPublisher(payload_codec=codec, async_writer=writer, signing_config=config), writer


class Clock:
    """One shared 'now' for the SDK's signer (patched) and the fast path (injected)."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def patched(self) -> Any:
        """aws_sdk_signers.signers with its `datetime.datetime.now(UTC)` reading this clock."""
        fake_datetime = types.SimpleNamespace(now=lambda tz=None: self.now)
        shim = types.SimpleNamespace(datetime=fake_datetime, UTC=datetime.UTC)
        return mock.patch.object(signers, "datetime", shim)


def signer_state(publisher: AWSEventPublisher[Any]) -> tuple[bytes, bool, bool]:
    signer: Any = publisher._signing_config.signer  # type: ignore[union-attr]
    return signer._prior_signature, signer._is_finalized, signer._signing_lock.locked()


# -- the property: byte-identical frames, identical signer state ----------------------------------

NEAR_MIDNIGHT = st.builds(
    lambda day, micro: datetime.datetime(2026, 12, 31, 23, 59, 58, tzinfo=datetime.UTC)
    + datetime.timedelta(days=day, microseconds=micro),
    st.integers(-400, 400), st.integers(0, 2_999_999))
ANY_TIME = st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2099, 1, 1),
                        timezones=st.just(datetime.UTC))
JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
PAYLOADS = st.one_of(
    st.just(b""),
    st.binary(max_size=40),
    JSON_TEXT.map(lambda value: json.dumps({"event": value}, ensure_ascii=False).encode()),
    st.integers(0, 70_000).map(lambda n: bytes(i % 251 for i in range(n))),  # up to ~70 KB
)
EVENTS = st.lists(st.tuples(PAYLOADS, st.integers(0, 1_500_000), st.integers(0, 1)), min_size=1, max_size=8)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.one_of(NEAR_MIDNIGHT, ANY_TIME), events=EVENTS)
def test_fast_frames_and_signer_state_equal_the_sdk_publishers(
        codec: Any, start: datetime.datetime, events: list[tuple[bytes, int, int]]) -> None:
    clock = Clock(start)

    async def main() -> None:
        sdk_resolver, fast_resolver = Resolver(), Resolver()
        sdk, sdk_out = make_publisher(codec, sdk_resolver)
        mine, fast_out = make_publisher(codec, fast_resolver)
        fast = await attach(mine, _chunk, clock)
        assert isinstance(fast, FastChunkSender)
        for payload, step_us, secret in events:
            clock.now += datetime.timedelta(microseconds=step_us)
            for resolver in (sdk_resolver, fast_resolver):
                resolver.identity = AWSCredentialsIdentity(access_key_id="AKID",
                                                           secret_access_key=SECRETS[secret])
            with clock.patched():
                await sdk.send(_chunk(payload))
            await fast.send(payload)
            assert fast_out.frames[-1] == sdk_out.frames[-1]
            assert signer_state(mine) == signer_state(sdk)
        assert fast.fast_sends == len(events)
        assert fast_resolver.calls == sdk_resolver.calls == len(events)  # asked every event
        # The SDK's own close then signs the final empty frame on the same chain.
        with clock.patched():
            await sdk.close()
            await mine.close()
        assert fast_out.frames == sdk_out.frames
        assert signer_state(mine) == signer_state(sdk)

    asyncio.run(main())


def test_fast_frames_pass_the_emulators_chunk_verifier(codec: Any) -> None:
    """An independent check (the emulator's own SigV4 chain verifier) on real-clock frames."""
    from runner.emulator.eventstream import decode_message
    from runner.emulator.sigv4 import ChunkVerifier

    async def main() -> list[bytes]:
        publisher, out = make_publisher(codec, Resolver())
        fast = await attach(publisher, _chunk)
        assert fast is not None
        for n in (0, 10, 2732, 5000):
            await fast.send(json.dumps({"event": {"audioInput": {"content": "A" * n}}}).encode())
        await publisher.close()
        return out.frames

    frames = asyncio.run(main())
    verifier = ChunkVerifier(SEED.decode(), SECRETS[0], region=REGION)
    inner = [verifier.verify(decode_message(frame)) for frame in frames]
    assert verifier.verified == 5 and verifier.finished and inner[-1] == b""


# -- when the fast path steps aside -----------------------------------------------------------------

def test_a_busy_finalized_or_dated_signer_gets_the_sdks_own_send(codec: Any) -> None:
    async def main() -> None:
        publisher, out = make_publisher(codec, Resolver())
        fast = await attach(publisher, _chunk)
        assert fast is not None
        signer: Any = publisher._signing_config.signer  # type: ignore[union-attr]
        async with signer._signing_lock:  # someone is signing: the SDK's send waits its turn
            task = asyncio.create_task(fast.send(b"{}"))
            await asyncio.sleep(0.05)
            assert not task.done() and out.frames == []
        await asyncio.wait_for(task, 2)
        assert fast.fast_sends == 0 and len(out.frames) == 1
        properties: Any = publisher._signing_config.signing_properties  # type: ignore[union-attr]
        properties["date"] = "20261130T120000Z"  # the SDK signs with it; the fast path would not
        await fast.send(b"{}")
        assert fast.fast_sends == 0 and len(out.frames) == 2
        del properties["date"]
        await fast.send(b"{}")
        assert fast.fast_sends == 1 and len(out.frames) == 3
        await publisher.close()
        with pytest.raises(OSError, match="closed stream"):
            await fast.send(b"{}")

    asyncio.run(main())


def test_a_failed_write_closes_the_publisher_as_the_sdk_does(codec: Any) -> None:
    class Broken(Collect):
        """The first write fails (the stream is gone); the end frame of close() gets through."""

        async def write(self, data: bytes) -> None:
            if not self.frames:
                self.frames.append(b"")
                raise ConnectionResetError("gone")
            self.frames.append(data)

    async def outcome(use_fast: bool) -> tuple[str, str, bool, int]:
        publisher, _ = make_publisher(codec, Resolver())
        publisher._writer = writer = Broken()
        fast = await attach(publisher, _chunk)
        assert fast is not None
        with pytest.raises(OSError) as caught:
            await (fast.send(b"{}") if use_fast else publisher.send(_chunk(b"{}")))
        return str(caught.value), repr(caught.value.__cause__), publisher.closed, len(writer.frames)

    fast, sdk = asyncio.run(outcome(True)), asyncio.run(outcome(False))
    assert fast == sdk == ("Failed to write to stream.", "ConnectionResetError('gone')", True, 2)


class SubSigner(AsyncEventSigner):
    pass


class SecondsEncoder(EventHeaderEncoder):
    """A header encoder with another timestamp layout than the one the fast path derived."""

    def encode_timestamp(self, key: str, value: datetime.datetime) -> None:
        self.encode_long(key, int(value.timestamp()))


def _signer(publisher: Any) -> Any:
    return publisher._signing_config.signer


# change -> (how it is made, what the fallback's debug line names)
CHANGES: dict[str, tuple[Callable[[Any], None], str]] = {
    "signer subclass": (lambda p: setattr(p._signing_config, "signer", SubSigner(
        initial_signature=SEED, event_encoder_cls=EventHeaderEncoder)), "signer is SubSigner"),
    "prior signature as text": (lambda p: setattr(_signer(p), "_prior_signature", SEED.decode()),
                                "signer._prior_signature"),
    "no signing lock": (lambda p: delattr(_signer(p), "_signing_lock"), "signer._signing_lock"),
    "finalized flag renamed": (lambda p: delattr(_signer(p), "_is_finalized"), "signer._is_finalized"),
    "another header layout": (lambda p: setattr(_signer(p), "_event_encoder_cls", SecondsEncoder),
                              "different layout"),
    "no signing config": (lambda p: setattr(p, "_signing_config", None), "no signing config"),
    "no region": (lambda p: p._signing_config.signing_properties.pop("region"), "signing properties"),
    "sync writer": (lambda p: setattr(p, "_writer", types.SimpleNamespace(write=lambda data: None)),
                    "no async writer"),
    "escaped JSON": (lambda p: setattr(p._serializer, "_payload_codec",
                                       EscapingCodec(p._serializer._payload_codec)), "different layout"),
}


class EscapingCodec:
    """The SDK's JSON codec, but writing '/' as '\\/' (valid JSON, other bytes)."""

    def __init__(self, codec: Any) -> None:
        self._codec = codec
        self.media_type = codec.media_type

    def create_serializer(self, sink: Any) -> Any:
        class Sink:
            def write(self, data: bytes) -> int:
                return int(sink.write(data.replace(b"/", b"\\/")))
        return self._codec.create_serializer(Sink())


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_internal_makes_it_fall_back_to_the_sdk(codec: Any, change: str,
                                                          caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_change, reason = CHANGES[change]
    caplog.set_level(logging.DEBUG, "runner.transport")
    monkeypatch.setattr(pins, "logged_fallbacks", set())

    async def main() -> None:
        publisher, _ = make_publisher(codec, Resolver())
        assert await attach(publisher, _chunk) is not None  # unchanged, it attaches
        changed, _ = make_publisher(codec, Resolver())
        make_change(changed)
        assert await attach(changed, _chunk) is None

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("SDK send fast path off") and reason in messages[0]


def test_another_sdk_version_falls_back(codec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sdk_send.PINNED, "aws-sdk-signers", "0.5.0")
    publisher, _ = make_publisher(codec, Resolver())
    assert asyncio.run(attach(publisher, _chunk)) is None


def test_bedrock_stream_sends_the_same_bytes_with_and_without_the_fast_path(codec: Any) -> None:
    """BedrockStream.send through the fast path, and through the SDK when an internal changed."""
    clock = Clock(datetime.datetime(2026, 11, 30, 17, 0, 0, 5, tzinfo=datetime.UTC))
    payloads = [json.dumps({"event": {"audioInput": {"content": "QUJD" * n}}}).encode() for n in (1, 683)]

    async def run(fallback: bool) -> tuple[list[bytes], FastChunkSender | None]:
        publisher, out = make_publisher(codec, Resolver())
        stream = BedrockStream(types.SimpleNamespace(input_stream=publisher))
        with clock.patched(), mock.patch.object(sdk_send, "utc_now", clock), \
                mock.patch.object(sdk_send, "_shape_problem", lambda p: "changed" if fallback else None):
            for payload in payloads:
                await stream.send(payload)
        return out.frames, stream.fast_sender

    async def main() -> None:
        fast_frames, fast = await run(fallback=False)
        sdk_frames, none = await run(fallback=True)
        assert fast is not None and fast.fast_sends == 2 and none is None
        assert fast_frames == sdk_frames and len(fast_frames) == 2

    asyncio.run(main())


# -- the send bound: only once a send suspends ------------------------------------------------------

def test_bounded_if_suspends() -> None:
    async def main() -> None:
        done: list[str] = []

        async def at_once() -> None:
            done.append("at once")

        async def briefly() -> None:
            await asyncio.sleep(0.01)
            done.append("briefly")

        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                done.append("cancelled")

        async def fails() -> None:
            await asyncio.sleep(0)
            raise ValueError("late")

        await bounded_if_suspends(at_once(), 0.01)
        await bounded_if_suspends(briefly(), 5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await bounded_if_suspends(forever(), 0.2)
        assert 0.15 < loop.time() - started < 2
        with pytest.raises(ValueError, match="late"):
            await bounded_if_suspends(fails(), 5)
        outer = asyncio.create_task(bounded_if_suspends(forever(), 30))
        await asyncio.sleep(0.05)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert done == ["at once", "briefly", "cancelled", "cancelled"]

    asyncio.run(main())


@pytest.mark.parametrize("fast", [True, False])
def test_a_send_on_a_full_undrained_buffer_still_times_out(codec: Any, fast: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Gotcha 2: after a reset nobody drains the body; the 17th send must fail, not hang."""
    monkeypatch.setattr(bedrock, "SEND_TIMEOUT_S", 0.3)
    if not fast:
        monkeypatch.setattr(sdk_send, "_shape_problem", lambda publisher: "changed")

    async def main() -> None:
        publisher, _ = make_publisher(codec, Resolver())
        publisher._writer = AsyncBytesProvider()  # the SDK's body: 16 chunks, then write waits
        stream = BedrockStream(types.SimpleNamespace(input_stream=publisher))
        for _ in range(16):
            await asyncio.wait_for(stream.send(b"{}"), 1)
        assert (stream.fast_sender is not None) == fast
        started = asyncio.get_running_loop().time()
        with pytest.raises(TransportError, match="timed out"):
            await asyncio.wait_for(stream.send(b"{}"), 5)
        assert asyncio.get_running_loop().time() - started < 3

    asyncio.run(main())

