"""The real aws-sdk-bedrock-runtime 0.12.0 client (awscrt, HTTP/2, TLS) against the emulator.

One emulator serves the module from a background loop; each test drives the SDK in its own
`asyncio.run`. Test handlers pick their behaviour from the model id the client asks for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aws_sdk_bedrock_runtime import models
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.exceptions import ChecksumMismatch, EventError, UnmodeledEventError
from smithy_core.exceptions import CallError
from smithy_http.aio.crt import AWSCRTHTTPClient

from runner.emulator.api import EXCEPTION_KINDS, EmulatorStream, Rejection, StreamRequest
from runner.emulator.server import Emulator
from runner.emulator.sigv4 import SIGNATURE_MISMATCH, UNKNOWN_KEY

RAW_GARBAGE = b"\x00\x00\x00\x30 this is not an event-stream message at all"
THROTTLED = "Too many requests, please wait before trying again."


class ScriptedHandler:
    """Behaviour chosen by model id; records what each model id received (thread-safe enough:
    only the emulator thread appends, tests read after the session)."""

    def __init__(self) -> None:
        self.received: dict[str, list[bytes]] = {}
        self.finished: dict[str, threading.Event] = {}

    def admit(self, request: StreamRequest) -> Rejection | None:
        self.received[request.model_id] = []
        self.finished[request.model_id] = threading.Event()
        if request.model_id == "reject":
            return Rejection(429, "ThrottlingException", THROTTLED)
        return None

    async def handle(self, stream: EmulatorStream) -> None:
        model = stream.request.model_id
        try:
            await self._behave(model, stream)
        finally:
            self.finished[model].set()

    async def _behave(self, model: str, stream: EmulatorStream) -> None:
        received = self.received[model]
        if model.startswith("echo"):
            while (payload := await stream.receive()) is not None:
                received.append(payload)
                await stream.send_event(_echo(json.loads(payload)))
            await stream.send_event({"event": {"completionEnd": {"stopReason": "END_TURN"}}})
            await stream.end()
            return
        first = await stream.receive()
        if first is not None:
            received.append(first)
        if model.startswith("exception:"):
            kind = model.removeprefix("exception:")
            await stream.send_exception(kind, f"emulated {kind}")
        elif model == "reset":
            await stream.reset()
        elif model == "raw":
            await stream.send_raw(RAW_GARBAGE)
            await stream.end()
        else:  # drain (e.g. bad chunk signature: the wire layer ends the input)
            while (payload := await stream.receive()) is not None:
                received.append(payload)


def _echo(event: dict[str, Any]) -> dict[str, Any]:
    (name, body), *_ = event["event"].items()
    if name == "audioInput":
        size = len(base64.b64decode(body["content"]))
        audio = base64.b64encode(bytes(size)).decode()
        return {"event": {"audioOutput": {"contentName": body["contentName"], "content": audio}}}
    return {"event": {"textOutput": {"role": "ASSISTANT", "content": f"ack {name}"}}}


@pytest.fixture(scope="module")
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture(scope="module")
def emulator(
    background_emulator: Callable[[ScriptedHandler], Emulator], handler: ScriptedHandler
) -> Emulator:
    return background_emulator(handler)


@pytest.fixture
def sdk_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    # SSL_CERT_FILE must be set before the CRT client builds its TLS context.
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    return emulator


class _ChunkKeySwap:
    """Signs the request with the right secret and every event with a wrong one: `send()` asks
    the resolver again for each event."""

    def __init__(self, key_id: str, secret: str) -> None:
        self._calls = 0
        self._good = AWSCredentialsIdentity(access_key_id=key_id, secret_access_key=secret)
        self._bad = AWSCredentialsIdentity(access_key_id=key_id, secret_access_key="x" * 40)

    async def get_identity(self, *, properties: Any) -> AWSCredentialsIdentity:
        self._calls += 1
        return self._good if self._calls == 1 else self._bad


async def make_client(emulator: Emulator, **overrides: Any) -> AsyncBedrockRuntimeClient:
    if "aws_credentials_identity_resolver" not in overrides:
        overrides.setdefault("aws_access_key_id", emulator.credentials.access_key_id)
        overrides.setdefault("aws_secret_access_key", emulator.credentials.secret_access_key)
    # region and endpoint come from the environment emulator.env() set.
    config = await AsyncBedrockRuntimeConfig.resolve(transport=AWSCRTHTTPClient(), **overrides)
    assert config.endpoint_uri is not None
    return AsyncBedrockRuntimeClient(config=config)


def chunk(event: dict[str, Any]) -> models.InvokeModelWithBidirectionalStreamInputChunk:
    payload = models.BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())
    return models.InvokeModelWithBidirectionalStreamInputChunk(value=payload)


async def close_input(stream: Any) -> None:
    """Bounded close: after a server-side end, the SDK's close() can block and swallow a cancel."""
    task = asyncio.create_task(stream.input_stream.close())
    await asyncio.wait({task}, timeout=2)
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    async def main() -> Any:
        # awscrt reports writes racing a finished stream as "never retrieved" task errors (see
        # bedrock-sdk.md §6.3); they are noise for these tests.
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(main())


async def open_stream(client: AsyncBedrockRuntimeClient, model_id: str) -> Any:
    operation = models.InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id)
    return await client.invoke_model_with_bidirectional_stream(operation)


AUDIO = base64.b64encode(bytes(range(256)) * 4).decode()  # 1024 B of PCM
SESSION = [
    {"event": {"sessionStart": {"inferenceConfiguration": {"maxTokens": 1024}}}},
    {"event": {"promptStart": {"promptName": "p"}}},
    {"event": {"contentStart": {"promptName": "p", "contentName": "a", "type": "AUDIO"}}},
    *[{"event": {"audioInput": {"promptName": "p", "contentName": "a", "content": AUDIO}}}] * 5,
    {"event": {"contentEnd": {"promptName": "p", "contentName": "a"}}},
    {"event": {"promptEnd": {"promptName": "p"}}},
    {"event": {"sessionEnd": {}}},
]


def test_full_session_round_trip(sdk_env: Emulator, handler: ScriptedHandler) -> None:
    before = sdk_env.stats()

    async def session() -> tuple[str, list[dict[str, Any]]]:
        client = await make_client(sdk_env)
        stream = await open_stream(client, "echo-session")
        for event in SESSION:
            await stream.input_stream.send(chunk(event))
        output, receiver = await stream.await_output()
        await stream.input_stream.close()
        received = []
        while (item := await receiver.receive()) is not None:
            assert isinstance(item, models.InvokeModelWithBidirectionalStreamOutputChunk)
            received.append(json.loads(item.value.bytes_))
        await client.close()
        return output.response_metadata.request_id, received

    request_id, received = run(session())
    assert [json.loads(p) for p in handler.received["echo-session"]] == SESSION
    names = [next(iter(e["event"])) for e in received]
    assert names == ["textOutput"] * 3 + ["audioOutput"] * 5 + ["textOutput"] * 3 + ["completionEnd"]
    assert received[3]["event"]["audioOutput"]["content"] == base64.b64encode(bytes(1024)).decode()
    assert len(request_id) == 36
    after = sdk_env.stats()
    assert after.events_in - before.events_in == len(SESSION)
    assert after.events_out - before.events_out == len(SESSION) + 1
    # Every event plus the signed empty end frame passed the chunk-signature chain.
    assert after.chunk_signatures_verified - before.chunk_signatures_verified == len(SESSION) + 1
    assert handler.finished["echo-session"].wait(5)


@pytest.mark.parametrize("kind", EXCEPTION_KINDS)
def test_exception_event_raises_modeled_exception(sdk_env: Emulator, kind: str) -> None:
    expected = getattr(models, kind[0].upper() + kind[1:])

    async def session() -> None:
        client = await make_client(sdk_env)
        stream = await open_stream(client, f"exception:{kind}")
        await stream.input_stream.send(chunk(SESSION[0]))
        _, receiver = await stream.await_output()
        with pytest.raises(expected) as info:
            await receiver.receive()
        assert info.value.message == f"emulated {kind}"
        await close_input(stream)
        await client.close()

    run(session())


def test_rejection_raises_from_await_output(sdk_env: Emulator) -> None:
    async def session() -> None:
        client = await make_client(sdk_env)
        stream = await open_stream(client, "reject")
        with pytest.raises(models.ThrottlingException) as info:
            await stream.await_output()
        assert info.value.message == THROTTLED
        await close_input(stream)
        await client.close()

    run(session())


@pytest.mark.parametrize(
    ("overrides", "error_type"),
    [
        ({"aws_secret_access_key": "w" * 40}, "InvalidSignatureException"),
        ({"aws_access_key_id": "AKIAUNKNOWNKEY000000"}, "UnrecognizedClientException"),
    ],
)
def test_bad_credentials_rejected_with_403(
    sdk_env: Emulator, overrides: dict[str, str], error_type: str
) -> None:
    async def session() -> None:
        client = await make_client(sdk_env, **overrides)
        stream = await open_stream(client, "echo-bad-credentials")
        # Neither error type is modeled for this operation: the SDK raises a bare CallError.
        with pytest.raises(CallError) as info:
            await stream.await_output()
        assert type(info.value) is CallError
        assert "status: 403" in str(info.value)
        assert f"#{error_type}" in str(info.value)
        await close_input(stream)
        await client.close()

    before = sdk_env.stats().rejected
    run(session())
    assert sdk_env.stats().rejected == before + 1
    assert SIGNATURE_MISMATCH and UNKNOWN_KEY  # the bodies carry these AWS messages


def test_bad_chunk_signature_ends_stream_with_error(sdk_env: Emulator, handler: ScriptedHandler) -> None:
    async def session() -> None:
        resolver = _ChunkKeySwap(sdk_env.credentials.access_key_id, sdk_env.credentials.secret_access_key)
        client = await make_client(sdk_env, aws_credentials_identity_resolver=resolver)
        stream = await open_stream(client, "drain-bad-chunk")
        await stream.input_stream.send(chunk(SESSION[0]))
        _, receiver = await stream.await_output()
        with pytest.raises(UnmodeledEventError) as info:
            await receiver.receive()
        assert f"InvalidSignatureException - {SIGNATURE_MISMATCH}" in str(info.value)
        await close_input(stream)
        await client.close()

    run(session())
    assert handler.received["drain-bad-chunk"] == []
    assert handler.finished["drain-bad-chunk"].wait(5)


def test_reset_makes_receive_return_none(sdk_env: Emulator, handler: ScriptedHandler) -> None:
    async def session() -> None:
        client = await make_client(sdk_env)
        stream = await open_stream(client, "reset")
        await stream.input_stream.send(chunk(SESSION[0]))
        _, receiver = await stream.await_output()
        assert await receiver.receive() is None
        await close_input(stream)
        await client.close()

    run(session())
    assert handler.finished["reset"].wait(5)


def test_invalid_raw_bytes_raise_event_stream_error(sdk_env: Emulator) -> None:
    async def session() -> None:
        client = await make_client(sdk_env)
        stream = await open_stream(client, "raw")
        await stream.input_stream.send(chunk(SESSION[0]))
        _, receiver = await stream.await_output()
        # The garbage's "prelude CRC" does not match: smithy raises ChecksumMismatch (an EventError).
        with pytest.raises(ChecksumMismatch) as info:
            await receiver.receive()
        assert isinstance(info.value, EventError)
        await close_input(stream)
        await client.close()

    run(session())


def test_client_configuration_lines(emulator: Emulator) -> None:
    env = emulator.env()
    assert set(env) == {
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "SSL_CERT_FILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    }
    assert env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == f"https://127.0.0.1:{emulator.port}"
    assert emulator.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert emulator.export_lines() == [
        f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://127.0.0.1:{emulator.port}",
        f"export SSL_CERT_FILE={emulator.ca_file}",
        f"export AWS_ACCESS_KEY_ID={env['AWS_ACCESS_KEY_ID']} "
        f"AWS_SECRET_ACCESS_KEY={env['AWS_SECRET_ACCESS_KEY']} AWS_REGION=us-east-1",
    ]


def test_closing_the_emulator_ends_live_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the test's own loop: a session blocked in receive() is torn down within a bounded time."""
    handler = ScriptedHandler()

    async def session() -> tuple[float, bool]:
        async with Emulator(handler) as emulator:
            for name, value in emulator.env().items():
                monkeypatch.setenv(name, value)
            client = await make_client(emulator)
            stream = await open_stream(client, "drain-live")
            await stream.input_stream.send(chunk(SESSION[0]))
            _, receiver = await stream.await_output()
            started = asyncio.get_running_loop().time()
        ended = await receiver.receive() is None  # connection closed under the client
        elapsed = asyncio.get_running_loop().time() - started
        await close_input(stream)
        await client.close()
        return elapsed, ended

    elapsed, ended = run(session())
    assert ended
    assert elapsed < 4
    assert handler.finished["drain-live"].is_set()
