"""runner/transports/crt.py: the lean HTTP/2 body writer, driven by the real SDK over TLS against the
emulator (one emulator on a background loop for the module; each test runs its own asyncio.run).

Fault cases run with both the stock AWSCRTHTTPClient and the lean one, so "no worse than the stock
client" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import InvokeModelWithBidirectionalStreamOperationInput
from smithy_http.aio.crt import AWSCRTHTTPClient

from runner.emulator import server
from runner.emulator.api import EmulatorStream, Rejection, StreamRequest
from runner.emulator.server import Emulator
from runner.errors import TransportError
from runner.transports.bedrock import SEND_TIMEOUT_S, BedrockStream, open_connector
from runner.transports.crt import MAX_WRITES_IN_FLIGHT, LeanCRTHTTPClient
from tests.emulator.conftest import BackgroundEmulator

MODEL = "amazon.nova-2-sonic-v1:0"
RESET_AFTER = 5
# smithy's AsyncBytesProvider holds this many events before send() blocks.
PROVIDER_CHUNKS = 16


def _audio_event(i: int) -> bytes:
    # The size of a 64 ms audio event (2048 B of PCM in base64), numbered to check the order.
    return json.dumps({"event": {"audioInput": {"n": i, "content": "A" * 2732}}}).encode()


class Handler:
    """Behaviour by model id prefix. `echo`: read to the end of input, then answer with the
    numbers read; `stall`: never read (HTTP/2 flow control closes); `reset`: RST_STREAM after
    RESET_AFTER events. Only the emulator thread writes; tests read after the stream is over."""

    def __init__(self) -> None:
        self.read: dict[str, list[int]] = {}
        self.done: dict[str, threading.Event] = {}
        self.progress = threading.Condition()  # notified after each event read

    def admit(self, request: StreamRequest) -> Rejection | None:
        self.read[request.model_id] = []
        self.done[request.model_id] = threading.Event()
        return None

    async def handle(self, stream: EmulatorStream) -> None:
        model = stream.request.model_id
        try:
            await self._behave(model, stream, self.read[model])
        finally:
            self.done[model].set()

    async def _behave(self, model: str, stream: EmulatorStream, read: list[int]) -> None:
        if model.startswith("stall"):
            await asyncio.sleep(60)  # the emulator cancels a handler once its stream is gone
            return
        while (payload := await stream.receive()) is not None:
            with self.progress:
                read.append(json.loads(payload)["event"]["audioInput"]["n"])
                self.progress.notify_all()
            if model.startswith("reset") and len(read) == RESET_AFTER:
                await stream.reset()
                return
        await stream.send_event({"event": {"textOutput": {"content": json.dumps(read)}}})
        await stream.end()


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler()


@pytest.fixture(scope="module")
def emulator(handler: Handler) -> Iterator[Emulator]:
    background = BackgroundEmulator(handler)
    yield background.start()
    background.stop()


@pytest.fixture
def env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    return emulator


@pytest.fixture
def remote_ends(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Per model id, how many input events the emulator had decoded each time the client's
    END_STREAM arrived (spying on the real `_Stream.on_remote_end`, which h2 calls per END_STREAM)."""
    seen: dict[str, list[int]] = {}
    real = server._Stream.on_remote_end

    def spy(self: Any) -> None:
        seen.setdefault(self.request.model_id, []).append(self._conn.counters.events_in)
        real(self)

    monkeypatch.setattr(server._Stream, "on_remote_end", spy)
    return seen


class CountingLoop(asyncio.SelectorEventLoop):
    """A real selector loop that counts wake-ups requested from other threads (the CRT thread's
    write and read completions arrive through call_soon_threadsafe)."""

    cross_thread_calls = 0

    def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
        CountingLoop.cross_thread_calls += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def _writer_task() -> asyncio.Task[Any]:
    """The stream's body-writer task (awscrt starts it when the stream opens)."""
    writers = [t for t in asyncio.all_tasks()
               if t.get_coro().__qualname__.endswith("._set_request_body_generator")]  # type: ignore[union-attr]
    assert len(writers) == 1, writers
    return writers[0]


async def _open(client_kind: str, model: str) -> tuple[BedrockStream, Callable[[], Any]]:
    """A BedrockStream through the runner's own connector ("lean") or through an SDK client built
    with smithy's stock AWSCRTHTTPClient ("stock"); returns it and the matching close."""
    if client_kind == "lean":
        connector = await open_connector(region=None, endpoint=None)
        stream = await connector.open_stream(model)
        return stream, connector.aclose
    config = await AsyncBedrockRuntimeConfig.resolve(transport=AWSCRTHTTPClient())
    sdk = AsyncBedrockRuntimeClient(config=config)
    sdk_stream = await sdk.invoke_model_with_bidirectional_stream(
        InvokeModelWithBidirectionalStreamOperationInput(model_id=model))
    return BedrockStream(sdk_stream), sdk.close


def test_a_copy_of_the_client_is_still_lean() -> None:
    assert type(copy.deepcopy(LeanCRTHTTPClient())) is LeanCRTHTTPClient


def test_a_stream_goes_through_the_lean_writer_without_a_wake_up_per_event(
        env: Emulator, handler: Handler, remote_ends: dict[str, list[int]]) -> None:
    model, count = f"echo-lean.{MODEL}", 300

    async def main() -> tuple[bytes | None, int, type]:
        connector = await open_connector(region=None, endpoint=None)
        try:
            stream = await connector.open_stream(model)
            await stream.wait_accepted()
            before = CountingLoop.cross_thread_calls
            for i in range(count):
                await stream.send(_audio_event(i))
                if i % 10 == 0:
                    await asyncio.sleep(0.002)  # real-time-like: let CRT complete the writes
            wake_ups = CountingLoop.cross_thread_calls - before
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 10)
            await stream.aclose()
            return reply, wake_ups, type(connector._current.sdk._config.transport)
        finally:
            await connector.aclose()

    reply, wake_ups, transport = asyncio.run(main(), loop_factory=CountingLoop)
    assert transport is LeanCRTHTTPClient  # the client the SDK really used
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count))
    # The stock writer needs one cross-thread wake-up per event (its write completion); this
    # one needs none while writes keep up (a few for the response headers).
    assert wake_ups < count // 10, wake_ups
    # END_STREAM exactly once, after every event (and the signed end-of-input frame).
    ends = remote_ends[model]
    assert len(ends) == 1 and handler.read[model] == list(range(count)), (ends, handler.read[model])


@pytest.mark.parametrize("client_kind", ["stock", "lean"])
def test_a_peer_that_stops_reading_blocks_sends_until_they_time_out(
        env: Emulator, handler: Handler, client_kind: str) -> None:
    model = f"stall-{client_kind}.{MODEL}"

    async def main() -> tuple[int, int, TransportError, float, float]:
        stream, close = await _open(client_kind, model)
        try:
            await stream.wait_accepted()
            received_before = env.stats().events_in
            sent = 0
            start = time.monotonic()
            with pytest.raises(TransportError) as caught:
                for i in range(5000):  # ~20 MB if nothing held the sender back
                    await stream.send(_audio_event(i))
                    sent += 1
            blocked_for = time.monotonic() - start
            received = env.stats().events_in - received_before
            start = time.monotonic()
            await stream.aclose()
            return sent, received, caught.value, blocked_for, time.monotonic() - start
        finally:
            await close()

    sent, received, error, blocked_for, close_s = asyncio.run(main())
    assert error.kind == "ConnectionError" and "timed out" in str(error)
    # What send() accepted beyond what reached the peer is bounded: smithy's buffer, the writes
    # in flight in CRT and the one in the writer's hands; nothing grows with the stall.
    assert received > 0 and sent - received <= PROVIDER_CHUNKS + MAX_WRITES_IN_FLIGHT + 2, (sent, received)
    assert blocked_for < SEND_TIMEOUT_S + 20, blocked_for
    assert close_s < 10, close_s


@pytest.mark.parametrize("client_kind", ["stock", "lean"])
def test_a_reset_stream_fails_the_writer_and_sends_time_out_instead_of_hanging(
        env: Emulator, handler: Handler, client_kind: str) -> None:
    model = f"reset-{client_kind}.{MODEL}"

    async def main() -> tuple[int, TransportError, BaseException | None, float]:
        stream, close = await _open(client_kind, model)
        try:
            await stream.wait_accepted()
            writer = _writer_task()
            sent = 0
            with pytest.raises(TransportError) as caught:
                for i in range(200):
                    await stream.send(_audio_event(i))
                    sent += 1
                    await asyncio.sleep(0.01)  # lets the reset arrive while events still go out
            start = time.monotonic()
            await stream.aclose()
            close_s = time.monotonic() - start
            await asyncio.wait({writer}, timeout=5)
            return sent, caught.value, writer.exception() if writer.done() else None, close_s
        finally:
            await close()

    sent, error, writer_error, close_s = asyncio.run(main())
    assert handler.read[model] == list(range(RESET_AFTER))
    # The send after the buffer filled behind the dead writer timed out: reported, not hung.
    assert error.kind == "ConnectionError" and "timed out" in str(error)
    assert sent <= RESET_AFTER + PROVIDER_CHUNKS + MAX_WRITES_IN_FLIGHT + 2, sent
    # The writer task ended with CRT's error, the one the stock writer ends with: its END_STREAM
    # write refused on the reset stream (the runner filters exactly this as shutdown noise).
    assert "AWS_ERROR_HTTP_STREAM_HAS_COMPLETED" in repr(writer_error), writer_error
    assert close_s < 10, close_s


def test_a_cancelled_writer_still_ends_the_stream_once_after_its_events(
        env: Emulator, handler: Handler, remote_ends: dict[str, list[int]]) -> None:
    model, count = f"echo-cancel.{MODEL}", 40

    async def main() -> bytes | None:
        stream, close = await _open("lean", model)
        try:
            await stream.wait_accepted()
            writer = _writer_task()
            for i in range(count):
                await stream.send(_audio_event(i))
            def all_read() -> bool:
                with handler.progress:
                    return handler.progress.wait_for(lambda: len(handler.read[model]) == count, 10)

            assert await asyncio.to_thread(all_read)  # every event reached the peer
            writer.cancel()
            await asyncio.wait({writer}, timeout=5)
            assert writer.cancelled()
            # The peer saw END_STREAM (without the signed end-of-input frame) and answered.
            reply = await asyncio.wait_for(stream.receive(), 10)
            await stream.aclose()
            return reply
        finally:
            await close()

    reply = asyncio.run(main())
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count))
    assert len(remote_ends[model]) == 1, remote_ends[model]
