"""runner/transports/crt.py: the lean HTTP/2 body writer, driven by the real SDK over TLS against the
emulator (one emulator on a background loop for the module; each test runs its own asyncio.run).

Fault cases run with both the stock AWSCRTHTTPClient and the lean one, so "no worse than the stock
client" is checked, not assumed. The direct write (LeanHttp2Stream.write_nowait, used by the SDK
send fast path) is counted through the stream's FastChunkSender, and the emulator verifies every
chunk signature of every test here.
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
from runner.transports import crt
from runner.transports.bedrock import SEND_TIMEOUT_S, BedrockStream, _chunk, open_connector
from runner.transports.crt import MAX_WRITES_IN_FLIGHT, LeanCRTHTTPClient, LeanHttp2Stream, direct_writer
from runner.transports.sdk_send import FastChunkSender
from tests.emulator.conftest import BackgroundEmulator

MODEL = "amazon.nova-2-sonic-v1:0"
RESET_AFTER = 5
PAUSE_AFTER = 3  # `pause`: stop reading after this many events for PAUSE_S (flow control closes)
PAUSE_S = 1.0
HOLD_AFTER = 3  # `hold`: stop reading after this many events until the test releases it
# smithy's AsyncBytesProvider holds this many events before send() blocks.
PROVIDER_CHUNKS = 16


def _audio_event(i: int, size: int = 2732) -> bytes:
    # By default the size of a 64 ms audio event (2048 B of PCM in base64), numbered to check the order.
    return json.dumps({"event": {"audioInput": {"n": i, "content": "A" * size}}}).encode()


class Handler:
    """Behaviour by model id prefix. `echo`: read to the end of input, then answer with the
    numbers read; `stall`: never read (HTTP/2 flow control closes); `reset`: RST_STREAM after
    RESET_AFTER events; `pause`: echo, but stop reading for PAUSE_S after PAUSE_AFTER events;
    `hold`: echo, but stop reading after HOLD_AFTER events until `release[model]` is set.
    Only the emulator thread writes; tests read after the stream is over."""

    def __init__(self) -> None:
        self.read: dict[str, list[int]] = {}
        self.done: dict[str, threading.Event] = {}
        self.progress = threading.Condition()  # notified after each event read
        self.release: dict[str, threading.Event] = {}

    def admit(self, request: StreamRequest) -> Rejection | None:
        self.read[request.model_id] = []
        self.done[request.model_id] = threading.Event()
        self.release[request.model_id] = threading.Event()
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
            if model.startswith("pause") and len(read) == PAUSE_AFTER:
                await asyncio.sleep(PAUSE_S)
            if model.startswith("hold") and len(read) == HOLD_AFTER:
                await asyncio.to_thread(self.release[model].wait, 30)
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


def _lean_stream(stream: BedrockStream) -> LeanHttp2Stream:
    """The HTTP/2 stream writing this stream's request body (found as the fast path finds it)."""
    lean = direct_writer(stream._sdk.input_stream._writer)
    assert isinstance(lean, LeanHttp2Stream)
    return lean


def _fast(stream: BedrockStream) -> FastChunkSender:
    fast = stream.fast_sender
    assert fast is not None, "the SDK send fast path did not attach"
    return fast


async def _writes_complete(lean: LeanHttp2Stream) -> None:
    """Until the writer has taken everything from the provider and CRT has completed every write
    queued on `lean` (bounded: 5 s)."""
    provider = lean._provider
    assert provider is not None
    async with asyncio.timeout(5):
        await asyncio.sleep(0)
        # CRT's thread completes the writes: there is no event to await.
        while provider._data or lean.writes_pending:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def test_a_stream_goes_through_the_lean_writer_without_a_wake_up_per_event(
        env: Emulator, handler: Handler, remote_ends: dict[str, list[int]]) -> None:
    model, count = f"echo-lean.{MODEL}", 300
    verified_before = env.stats().chunk_signatures_verified

    async def main() -> tuple[bytes | None, int, type, int, int]:
        connector = await open_connector(region=None, endpoint=None)
        try:
            stream = await connector.open_stream(model)
            await stream.wait_accepted()
            before = CountingLoop.cross_thread_calls
            for i in range(count):
                await stream.send(_audio_event(i))
                if i % 10 == 0:
                    # Real-time-like: CRT completes the writes between events (and so the
                    # in-flight bound never sends one the provider's way).
                    await _writes_complete(_lean_stream(stream))
            wake_ups = CountingLoop.cross_thread_calls - before
            fast = _fast(stream)
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 10)
            await stream.aclose()
            return (reply, wake_ups, type(connector._current.sdk._config.transport), fast.fast_sends,
                    fast.direct_writes)
        finally:
            await connector.aclose()

    reply, wake_ups, transport, fast_sends, direct = asyncio.run(main(), loop_factory=CountingLoop)
    assert transport is LeanCRTHTTPClient  # the client the SDK really used
    assert reply is not None
    # Every event went straight to the HTTP/2 stream (none through smithy's provider), and the
    # emulator verified all their signatures and the SDK's final empty frame on the same chain.
    assert fast_sends == direct == count, (fast_sends, direct)
    assert env.stats().chunk_signatures_verified - verified_before == count + 1
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


def _public_write_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lean streams opened from now on write each chunk through awscrt's public `write_data`, as
    with an awscrt other than the pinned one (the version guard's fallback)."""
    monkeypatch.setattr(crt, "AWSCRT", "0.0.0-not-installed")


@pytest.mark.parametrize("client_kind", ["stock", "lean", "lean-public"])
def test_a_reset_stream_fails_the_writer_and_sends_time_out_instead_of_hanging(
        env: Emulator, handler: Handler, client_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = f"reset-{client_kind}.{MODEL}"
    if client_kind == "lean-public":
        _public_write_path(monkeypatch)
        client_kind = "lean"

    async def main() -> tuple[int, TransportError, BaseException | None, float, float]:
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
                    last_sent = time.monotonic()
            failed_s = time.monotonic() - last_sent
            start = time.monotonic()
            await stream.aclose()
            close_s = time.monotonic() - start
            await asyncio.wait({writer}, timeout=5)
            return sent, caught.value, writer.exception() if writer.done() else None, failed_s, close_s
        finally:
            await close()

    sent, error, writer_error, failed_s, close_s = asyncio.run(main())
    assert handler.read[model] == list(range(RESET_AFTER))
    if client_kind == "stock":
        # The send after the buffer filled behind the dead writer timed out: reported, not hung.
        assert error.kind == "ConnectionError" and "timed out" in str(error)
        assert sent <= RESET_AFTER + PROVIDER_CHUNKS + MAX_WRITES_IN_FLIGHT + 2, sent
    else:
        # The events went straight to the stream, so the send after a write failed on the reset
        # stream says so at once (the SDK's words, as for a failed provider write), instead of
        # filling the provider behind a dead writer and timing out.
        assert error.kind == "ConnectionError" and "Failed to write to stream" in str(error), error
        assert isinstance(error.__cause__, OSError), repr(error.__cause__)
        assert failed_s < SEND_TIMEOUT_S, failed_s
        assert sent <= RESET_AFTER + MAX_WRITES_IN_FLIGHT + 2, sent
        # The writer learnt of the same failed write when the SDK's close woke it, and ended
        # with it (then its END_STREAM was refused as well, below).
        assert writer_error is not None and writer_error.__context__ is error.__cause__.__cause__
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


def test_events_behind_one_waiting_in_the_provider_take_the_provider_and_keep_their_order(
        env: Emulator, handler: Handler) -> None:
    """An event the SDK's own publisher wrote (it waits in smithy's provider until the writer takes
    it) must not be overtaken: the fast path's next event goes the provider's way too."""
    model, count = f"echo-mixed.{MODEL}", 30
    verified_before = env.stats().chunk_signatures_verified

    async def main() -> tuple[bytes | None, list[bool], int]:
        stream, close = await _open("lean", model)
        try:
            await stream.wait_accepted()
            await stream.send(_audio_event(0))  # attaches the fast path
            fast, lean = _fast(stream), _lean_stream(stream)
            provider = stream._sdk.input_stream._writer
            took_direct: list[bool] = []
            for i in range(1, count, 2):
                await _writes_complete(lean)
                await stream._sdk.input_stream.send(_chunk(_audio_event(i)))  # the SDK's own send
                # Nothing has suspended since, so the writer has not taken that frame yet.
                assert len(provider._data) == 1
                before = fast.direct_writes
                await stream.send(_audio_event(i + 1))
                took_direct.append(fast.direct_writes > before)
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 10)
            await stream.aclose()
            return reply, took_direct, fast.direct_writes
        finally:
            await close()

    reply, took_direct, direct = asyncio.run(main())
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count + 1))
    assert took_direct == [False] * len(took_direct), took_direct
    assert direct == 1  # only the first event, sent with the provider empty and the writer idle
    assert env.stats().chunk_signatures_verified - verified_before == count + 2


def test_events_while_the_writer_is_held_back_take_the_provider_and_keep_their_order(
        env: Emulator, handler: Handler, remote_ends: dict[str, list[int]]) -> None:
    """A peer that stops reading for a while: writes stop completing, the in-flight bound is
    reached and the writer waits (not idle), so events queue in the provider; then the peer reads
    on, and once the writer has caught up events go straight to the stream again. None was lost or
    reordered, and every signature verified."""
    # More than the emulator takes unread (its 256-event queue, then a 1 MiB stream window).
    model, burst, tail = f"pause.{MODEL}", 800, 20
    count = burst + tail
    verified_before = env.stats().chunk_signatures_verified

    async def main() -> tuple[bytes | None, int, int, int, float]:
        stream, close = await _open("lean", model)
        try:
            await stream.wait_accepted()
            start = time.monotonic()
            for i in range(burst):
                await stream.send(_audio_event(i))  # back to back: the pause holds them back
            blocked_for = time.monotonic() - start
            fast = _fast(stream)
            burst_direct = fast.direct_writes
            for i in range(burst, count):
                await _writes_complete(_lean_stream(stream))
                await stream.send(_audio_event(i))
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 10)
            await stream.aclose()
            return reply, fast.fast_sends, burst_direct, fast.direct_writes - burst_direct, blocked_for
        finally:
            await close()

    reply, fast_sends, burst_direct, tail_direct, blocked_for = asyncio.run(main())
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count))
    assert fast_sends == count
    # The burst's first events went straight to CRT (up to the in-flight bound), the held-back
    # ones through the provider; after it, straight again.
    assert 0 < burst_direct < burst, burst_direct
    assert tail_direct == tail, tail_direct
    assert blocked_for >= PAUSE_S / 2, blocked_for  # the sender really was held back
    assert env.stats().chunk_signatures_verified - verified_before == count + 1
    assert len(remote_ends[model]) == 1, remote_ends[model]


def test_events_while_the_writer_holds_one_take_the_provider_and_keep_their_order(
        env: Emulator, handler: Handler, remote_ends: dict[str, list[int]]) -> None:
    """Paced events to a peer that stops reading: once writes stop completing the in-flight bound
    is reached, the next event goes to the provider and the writer takes it and waits for the
    oldest write. It then holds that event while the provider is empty: events sent meanwhile
    must go the provider's way too, or they would overtake it."""
    # 16 KB events: the emulator stops acknowledging (closing the window) after ~320 of them.
    model, size, tail = f"hold.{MODEL}", 16_000, 20
    verified_before = env.stats().chunk_signatures_verified

    async def main() -> tuple[bytes | None, int, int, int, int]:
        stream, close = await _open("lean", model)
        try:
            await stream.wait_accepted()
            await stream.send(_audio_event(0, size))
            fast, lean = _fast(stream), _lean_stream(stream)
            provider = stream._sdk.input_stream._writer
            sent, to_provider, while_holding = 1, 0, 0
            while to_provider < PROVIDER_CHUNKS // 2 and sent < 3000:
                holding = not lean._idle and not provider._data  # the writer has one in hand
                before = fast.direct_writes
                await stream.send(_audio_event(sent, size))
                sent += 1
                if fast.direct_writes == before:
                    to_provider += 1
                    while_holding += holding
                elif holding:
                    raise AssertionError(f"event {sent - 1} overtook the one the writer holds")
                await asyncio.sleep(0.001)
            handler.release[model].set()  # the peer reads on, before the provider fills
            direct_before_tail = fast.direct_writes
            for i in range(sent, sent + tail):
                await _writes_complete(lean)
                await stream.send(_audio_event(i, size))
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 10)
            await stream.aclose()
            return reply, sent + tail, to_provider, while_holding, fast.direct_writes - direct_before_tail
        finally:
            handler.release[model].set()
            await close()

    reply, count, to_provider, while_holding, tail_direct = asyncio.run(main())
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count))
    assert to_provider == PROVIDER_CHUNKS // 2, to_provider
    assert while_holding >= 1, while_holding  # the case this test is about did happen
    assert tail_direct == tail, tail_direct
    assert env.stats().chunk_signatures_verified - verified_before == count + 1
    assert len(remote_ends[model]) == 1, remote_ends[model]


@pytest.fixture
def late_server_settings(monkeypatch: pytest.MonkeyPatch) -> float:
    """Each new emulator connection holds everything it sends (its SETTINGS first) for a while,
    as a far-away server's would arrive: the client opens its stream and writes meanwhile."""
    hold_s = 0.5
    real_flush = server._Connection.flush
    released: set[int] = set()
    holding: set[int] = set()

    def flush(self: Any) -> None:
        if id(self) in released:
            real_flush(self)
        elif id(self) not in holding:  # h2 keeps what is queued until the release
            holding.add(id(self))

            def release() -> None:
                released.add(id(self))
                real_flush(self)

            asyncio.get_running_loop().call_later(hold_s, release)

    monkeypatch.setattr(server._Connection, "flush", flush)
    return hold_s


@pytest.mark.parametrize(("client_kind", "by_settings"), [("stock", False), ("lean", False), ("lean", True)])
def test_a_burst_before_the_servers_frames_arrive_is_not_stalled_for_ever(
        env: Emulator, handler: Handler, late_server_settings: float, client_kind: str, by_settings: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Events sent at once on a new connection, more than HTTP/2's default window (65535 B),
    before anything from the server has arrived. aws-c-http leaves a stream stalled for ever when
    its window ran out before SETTINGS_INITIAL_WINDOW_SIZE raised it (it resumes a stream only on a
    WINDOW_UPDATE). Two defences, each enough for its client: the emulator raises each stream's
    window by a WINDOW_UPDATE, not by SETTINGS (so even the stock client resumes: bench_emulator_wire
    hung on it once in CI); and the lean writer holds what is beyond the default window until the
    response headers show the server's SETTINGS are in (for a real server that raises windows by
    SETTINGS: `agent-run doctor --emulate` on a v1 agent, which speaks 1.5 s of audio at once,
    failed ~1 time in 3 before)."""
    monkeypatch.setattr(server, "_WINDOW_BY_SETTINGS", by_settings)  # for the connections opened here
    model, count = f"echo-burst-{client_kind}-{by_settings}.{MODEL}", 60  # ~166 KB

    async def main() -> tuple[bytes | None, float]:
        stream, close = await _open(client_kind, model)
        try:
            start = time.monotonic()
            for i in range(count):
                await stream.send(_audio_event(i))
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 10)
            await stream.aclose()
            return reply, time.monotonic() - start
        finally:
            await close()

    reply, elapsed = asyncio.run(main())
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count))
    assert elapsed >= late_server_settings * 0.9  # the burst really went out before the SETTINGS


@pytest.mark.parametrize("path", ["direct", "public"])
def test_a_burst_of_many_writes_arrives_whole_and_in_order_on_either_write_path(
        env: Emulator, handler: Handler, remote_ends: dict[str, list[int]], path: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Events sent back to back, so that many writes are queued on CRT at once (the in-flight bound
    is reached, several go in one TLS record, a frame may take part of a chunk): through awscrt's C
    call with the lean chunk object (the pinned awscrt), or through the public `write_data` (any
    other version). Every byte arrives once and in order, every signature verifies."""
    if path == "public":
        _public_write_path(monkeypatch)
    model, count = f"echo-path-{path}.{MODEL}", 400
    sizes = [2732, 16_000, 40_000, 7]  # 40 KB: more than a frame (16 KB), so it is read in parts
    verified_before = env.stats().chunk_signatures_verified

    async def main() -> tuple[bytes | None, bool, int, int]:
        stream, close = await _open("lean", model)
        try:
            await stream.wait_accepted()
            await stream.send(_audio_event(0))
            lean = _lean_stream(stream)
            for i in range(1, count):
                await stream.send(_audio_event(i, sizes[i % len(sizes)]))
            await _writes_complete(lean)
            pending = lean.writes_pending
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 20)
            await stream.aclose()
            return reply, lean._direct, lean._queued, pending
        finally:
            await close()

    reply, direct, queued, pending = asyncio.run(main())
    assert direct is (path == "direct")  # the path this test is about was taken
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count))
    assert queued >= count and pending == 0, (queued, pending)  # + the SDK's signed end frame
    assert env.stats().chunk_signatures_verified - verified_before == count + 1
    assert len(remote_ends[model]) == 1, remote_ends[model]


def test_the_direct_write_path_needs_the_pinned_awscrt(monkeypatch: pytest.MonkeyPatch) -> None:
    assert crt._awscrt_pinned()  # the installed awscrt is the pinned one (or this test is stale)
    monkeypatch.setattr(crt, "AWSCRT", "0.0.0-not-installed")
    assert not crt._awscrt_pinned()
    monkeypatch.undo()
    monkeypatch.delattr(crt._awscrt, "input_stream_new")  # same version, call gone: not used
    assert not crt._awscrt_pinned()


@pytest.mark.parametrize("room", [1, 7, 100, 5000])
def test_a_chunk_is_read_whole_in_order_then_ends(room: int) -> None:
    """What aws-c-http gets reading a chunk into frames of `room` bytes: every byte once, in order,
    then 0 (the end), and 0 again if read after that."""
    data = bytes(range(256)) * 11
    chunk = crt._Chunk(data)
    got = bytearray()
    buffer = bytearray(room)
    while n := chunk._read_into_memoryview(memoryview(buffer)):
        assert 0 < n <= room
        got += buffer[:n]
    assert bytes(got) == data
    assert chunk._read_into_memoryview(memoryview(buffer)) == 0


@pytest.mark.parametrize("keep", [True, False])
def test_crts_thread_keeps_its_python_state_while_a_stream_is_open_and_only_then(
        env: Emulator, handler: Handler, keep: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `threading.local` set in one write-completion callback on CRT's thread is still there in the
    next one while the stream is open (the thread's Python state is kept, not made anew per
    callback), and gone once the stream is over (released: the next stream on the same connection,
    so the same thread, starts without it). Without keeping (another CPython), it never survives."""
    if not keep:
        monkeypatch.setattr(crt, "PYTHON", (0, 0))
    local = threading.local()
    seen: list[tuple[int, int | None, int]] = []  # (stream, the mark found, thread), per completion
    real = LeanHttp2Stream._on_write

    def spy(self: LeanHttp2Stream, error_code: int) -> None:
        seen.append((id(self), getattr(local, "mark", None), threading.get_ident()))
        real(self, error_code)
        local.mark = id(self)

    monkeypatch.setattr(LeanHttp2Stream, "_on_write", spy)

    async def one_stream(connector: Any, name: str) -> LeanHttp2Stream:
        stream = await connector.open_stream(f"echo-keep-{keep}-{name}.{MODEL}")
        await stream.wait_accepted()
        for i in range(12):
            await stream.send(_audio_event(i))
            await _writes_complete(_lean_stream(stream))
        lean = _lean_stream(stream)
        await stream.close_input()
        assert await asyncio.wait_for(stream.receive(), 10) is not None
        await stream.aclose()
        async with asyncio.timeout(5):  # until CRT has reported the stream complete
            while not lean._completion_future.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return lean

    async def main() -> list[int]:
        connector = await open_connector(region=None, endpoint=None)
        try:
            first = await one_stream(connector, "a")
            return [id(first), id(await one_stream(connector, "b"))]  # (both alive: distinct ids)
        finally:
            await connector.aclose()

    streams = asyncio.run(main())
    threads = {thread for _, _, thread in seen}
    assert len(threads) == 1 and threading.get_ident() not in threads, threads  # CRT's one thread
    for stream in streams:
        marks = [mark for of, mark, _ in seen if of == stream]
        assert len(marks) >= 12, seen
        assert marks[0] is None, marks  # a new state: for the second stream, the first was released
        assert set(marks[1:]) == ({stream} if keep else {None}), marks
    assert not threads & set(crt._kept_states), crt._kept_states  # released with the stream


def test_the_fast_paths_can_be_turned_off(env: Emulator, handler: Handler,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENT_RUN_SDK_FAST_PATHS=0: the runner's connector uses smithy's stock client and the SDK's
    own send (the escape hatch should a fast path misbehave), and a stream still works."""
    monkeypatch.setenv("AGENT_RUN_SDK_FAST_PATHS", "0")
    model, count = f"echo-nofast.{MODEL}", 20
    verified_before = env.stats().chunk_signatures_verified

    async def main() -> tuple[bytes | None, type, FastChunkSender | None]:
        connector = await open_connector(region=None, endpoint=None)
        try:
            stream = await connector.open_stream(model)
            for i in range(count):
                await stream.send(_audio_event(i))
            await stream.close_input()
            reply = await asyncio.wait_for(stream.receive(), 10)
            fast = stream.fast_sender  # type: ignore[attr-defined]
            await stream.aclose()
            return reply, type(connector._current.sdk._config.transport), fast  # type: ignore[attr-defined]
        finally:
            await connector.aclose()

    reply, transport, fast = asyncio.run(main())
    assert transport is AWSCRTHTTPClient and fast is None
    assert reply is not None
    assert json.loads(json.loads(reply)["event"]["textOutput"]["content"]) == list(range(count))
    assert env.stats().chunk_signatures_verified - verified_before == count + 1
