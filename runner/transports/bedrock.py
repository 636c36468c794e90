"""Bedrock transport: with its send and receive fast paths (sdk_send.py, sdk_receive.py), the only
module that imports the Bedrock SDK (`aws_sdk_bedrock_runtime`, smithy).

Facts this relies on (verified in ../shared/reference/bedrock-sdk.md, SDK 0.12.0):
- the default aiohttp transport cannot do duplex streams: always pass AWSCRTHTTPClient() (crt.py's
  subclass, which with this module imports smithy's HTTP client and owns awscrt);
- with no resolvable credentials the SDK hangs forever inside invoke, so credentials are resolved
  here first and a failure becomes CredentialsError within a second;
- after an HTTP/2 RST_STREAM, `receive()` returns None, later sends block once the 16-slot
  buffer fills, and `input_stream.close()` blocks and swallows the first cancellation: so sends
  stop once the output has ended, and closing is bounded by repeated cancellation;
- awscrt logs "Task exception was never retrieved ... AWS_ERROR_HTTP_STREAM_HAS_COMPLETED" on
  non-clean shutdowns: a loop exception handler filters exactly that noise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
    InvokeModelWithBidirectionalStreamOutputChunk,
    ServiceError,
)
from smithy_aws_core.config.exceptions import ConfigError as SdkConfigError
from smithy_aws_core.config.exceptions import ConfigValidationError, ProfileNotFoundError
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_core.identity.chain import IdentityChain
from smithy_aws_event_stream.exceptions import EventError, UnmodeledEventError
from smithy_core.exceptions import CallError, SmithyError
from smithy_http.aio.crt import AWSCRTHTTPClient

from runner.errors import CredentialsError, TransportError
from runner.transports.base import ConnectionInfo
from runner.transports.crt import LeanCRTHTTPClient, direct_writer
from runner.transports.endpoint import endpoint_problem, run_endpoint
from runner.transports.sdk_files import check_sdk_files
from runner.transports.sdk_receive import FastChunkReceiver, attach_receiver
from runner.transports.sdk_send import FastChunkSender, attach, bounded_if_suspends

log = logging.getLogger("runner.transport")

# Service errors after which a new stream may well succeed (nova-sonic-protocol.md §5.3).
RETRYABLE_KINDS = frozenset({
    "ModelTimeoutException", "ThrottlingException", "ModelStreamErrorException",
    "InternalServerException", "ServiceUnavailableException", "ModelNotReadyException",
    "ModelErrorException", "InvalidEventBytes", "StreamReset", "ConnectionError", "EndpointUnreachable",
})
# awscrt error names (in the SDK's message) meaning the endpoint cannot be reached at all: no such
# host, nothing listening, no route, or no TLS with it.
UNREACHABLE_CODES = ("AWS_IO_DNS_", "AWS_IO_SOCKET_CONNECTION_REFUSED", "AWS_IO_SOCKET_NO_ROUTE_TO_HOST",
                     "AWS_IO_SOCKET_NETWORK_DOWN", "AWS_IO_SOCKET_INVALID_ADDRESS", "AWS_IO_TLS_")
# ValidationExceptions that are really transient (livekit's RECOVERABLE_VALIDATION_ERROR_MESSAGES).
RECOVERABLE_VALIDATION_MESSAGES = ("InternalErrorCode=531", "System instability detected")

CREDENTIALS_TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 2.0


def translate_error(exc: BaseException) -> TransportError:
    """Turn an SDK exception into the runner's TransportError, keeping the service's message."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, ServiceError):
        kind = type(exc).__name__
        message = getattr(exc, "message", None) or str(exc)
        retryable = kind in RETRYABLE_KINDS or (
            kind == "ValidationException"
            and any(m in message for m in RECOVERABLE_VALIDATION_MESSAGES))
        return TransportError(f"{kind}: {message}", kind=kind, retryable=retryable)
    if isinstance(exc, UnmodeledEventError):
        # e.g. "Received unmodeled event error: InvalidSignatureException - ..." mid-stream.
        return TransportError(str(exc), kind="UnmodeledEventError", retryable=False)
    if isinstance(exc, EventError):
        kind = type(exc).__name__
        return TransportError(f"malformed event from the service ({kind}): {exc}",
                              kind="InvalidEventBytes", retryable=True)
    if isinstance(exc, CallError):
        # Errors the operation does not model (bad signature, unknown key) arrive as a bare
        # CallError: "Unknown error for operation ... - status: 403 - id: ...#InvalidSignatureException".
        status = re.search(r"status: (\d{3})", str(exc))
        name = re.search(r"#(\w+)\s*$", str(exc))
        kind = name.group(1) if name else "CallError"
        code = int(status.group(1)) if status else 0
        hint = " (check your AWS credentials)" if code in (401, 403) else ""
        return TransportError(f"the service refused the request: {kind} (HTTP {code}){hint}",
                              kind=kind, retryable=code == 429 or code >= 500)
    if isinstance(exc, SmithyError | OSError):
        # Retryable (a blip mid-run), but the conversation refuses to retry it before any stream
        # was ever accepted: an endpoint that cannot be reached at start is a user error.
        unreachable = any(code in str(exc) for code in UNREACHABLE_CODES)
        kind = "EndpointUnreachable" if unreachable else "ConnectionError"
        return TransportError(f"connection failed: {exc}", kind=kind, retryable=True)
    return TransportError(f"stream failed: {type(exc).__name__}: {exc}", kind=type(exc).__name__)


# AGENT_RUN_SDK_FAST_PATHS=0 turns off what relies on the SDK's and awscrt's internals (the send
# fast path, sdk_send.py, the receive fast path, sdk_receive.py, and the lean HTTP/2 client, crt.py):
# every stream then uses the SDK as it is, for a little more CPU. An escape hatch, should a fast
# path ever misbehave.
FAST_PATHS_VARIABLE: Final = "AGENT_RUN_SDK_FAST_PATHS"


def fast_paths() -> bool:
    return os.environ.get(FAST_PATHS_VARIABLE, "1").strip() != "0"


class BedrockStream:
    """One InvokeModelWithBidirectionalStream call."""

    def __init__(self, sdk_stream: Any, on_closed: Callable[[], Awaitable[None]] | None = None) -> None:
        self._sdk = sdk_stream
        self._on_closed = on_closed  # the connector's: this stream no longer needs its client
        self._receiver: Any = None
        self._output_ended = False
        self._input_closed = False
        self._closed = False
        self._attached = False
        self._fast: FastChunkSender | None = None
        self._fast_rx: FastChunkReceiver | None = None
        self._rx_attached = False

    @property
    def fast_receiver(self) -> FastChunkReceiver | None:
        """The receive fast path in use (None: not accepted yet, or the SDK's own receive)."""
        return self._fast_rx

    @property
    def fast_sender(self) -> FastChunkSender | None:
        """The publisher fast path in use (None: not attached yet, or the SDK's own send)."""
        return self._fast

    async def send(self, payload: bytes) -> None:
        if self._output_ended or self._input_closed:
            # Sending after the service ended the stream blocks forever (gotcha 2).
            raise TransportError("the stream has ended", kind="StreamReset", retryable=True)
        if not self._attached:
            self._attached = True
            # Frames go straight to the lean HTTP/2 stream when that is order-safe (crt.py).
            if fast_paths():
                self._fast = await attach(self._sdk.input_stream, _chunk, find_direct=direct_writer)
        fast = self._fast
        try:
            # Bounded from the moment a send suspends (a full buffer, a credential refresh): one
            # that completes at once needs no timer (sdk_send.bounded_if_suspends).
            if fast is not None:
                await bounded_if_suspends(fast.send(payload), SEND_TIMEOUT_S)
            else:
                await bounded_if_suspends(self._sdk.input_stream.send(_chunk(payload)), SEND_TIMEOUT_S)
        except TimeoutError:
            raise TransportError("sending to the stream timed out", kind="ConnectionError",
                                 retryable=True) from None
        except Exception as exc:
            raise translate_error(exc) from exc

    async def wait_accepted(self) -> None:
        """Wait for the service's response headers: the request was accepted (HTTP 200)."""
        if self._receiver is not None:
            return
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                _, self._receiver = await self._sdk.await_output()
        except TimeoutError:
            self._output_ended = True
            raise TransportError(f"no response from the service within {OPEN_TIMEOUT_S:.0f} s",
                                 kind="ConnectionError", retryable=True) from None
        except Exception as exc:
            self._output_ended = True
            raise translate_error(exc) from exc
        if not self._rx_attached and fast_paths():  # once: a second would lose what the first holds
            self._rx_attached = True
            # Chunk events are decoded without the SDK's generic deserializer when that gives the
            # same bytes; everything else still goes through its receiver (sdk_receive.py).
            self._fast_rx = await attach_receiver(self._receiver, _chunk_payload)

    async def receive(self) -> bytes | None:
        await self.wait_accepted()
        try:
            while True:
                item = await self._next_item()
                if item is None:
                    self._output_ended = True
                    return None
                if type(item) is bytes:  # a chunk's payload, from the fast path
                    return item
                if isinstance(item, InvokeModelWithBidirectionalStreamOutputChunk):
                    data: bytes = item.value.bytes_
                    return data
                log.warning("ignoring unmodelled output member %s", type(item).__name__)
        except Exception as exc:
            self._output_ended = True
            raise translate_error(exc) from exc

    async def close_input(self, limit_s: float = CLOSE_TIMEOUT_S) -> None:
        if self._input_closed:
            return
        self._input_closed = True
        await _bounded(self._sdk.input_stream.close(), limit_s)

    async def aclose(self) -> None:
        if self._closed:
            return
        try:
            await self.close_input()
            self._closed = True
            if self._receiver is not None and not self._output_ended:
                await _bounded(self._drain(), CLOSE_TIMEOUT_S)
        finally:
            self._closed = True
            on_closed, self._on_closed = self._on_closed, None
            if on_closed is not None:
                await on_closed()

    def _next_item(self) -> Awaitable[object]:
        fast = self._fast_rx
        return self._receiver.receive() if fast is None else fast.receive()

    async def _drain(self) -> None:
        while await self._next_item() is not None:
            pass


def _chunk_payload(item: object) -> bytes | None:
    if isinstance(item, InvokeModelWithBidirectionalStreamOutputChunk):
        data: bytes | None = item.value.bytes_
        return data
    return None


def _chunk(payload: bytes) -> InvokeModelWithBidirectionalStreamInputChunk:
    return InvokeModelWithBidirectionalStreamInputChunk(value=BidirectionalInputPayloadPart(bytes_=payload))


async def _bounded(coro: Any, limit_s: float) -> None:
    """Await `coro` for at most `limit_s` s, then cancel it until it really stops.

    `input_stream.close()` swallows the first cancellation after a reset, so a single
    `wait_for` can hang; cancelling repeatedly is what terminates it (bedrock-sdk.md §6).
    """
    task = asyncio.ensure_future(coro)
    await asyncio.wait({task}, timeout=limit_s)
    for _ in range(50):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.debug("stream close ended with %r", task.exception())


class _Client:
    """One SDK client and the streams opened on it that have not closed yet."""

    def __init__(self, sdk: AsyncBedrockRuntimeClient) -> None:
        self.sdk = sdk
        self.streams = 0


class BedrockConnector:
    """Resolves region, endpoint and credentials once, then opens streams on one SDK client.

    A server's connector lives as long as the worker and serves every conversation, so nothing
    here may grow with them: after a credential refresh the previous client is closed as soon as
    the last stream opened on it has closed (each client counts its open streams), and at most
    MAX_RETIRED such clients wait for their streams: past that the oldest is closed anyway (its
    streams fail over to a new one, as after any reset).
    """

    MAX_RETIRED = 4

    def __init__(self, client: AsyncBedrockRuntimeClient, info: ConnectionInfo,
                 settings: _Settings) -> None:
        self._current = _Client(client)
        self.info = info
        self._settings = settings
        self._retired: list[_Client] = []
        self._refreshing = asyncio.Lock()
        self._refreshes = 0
        self._closed = False

    @property
    def clients(self) -> int:
        """SDK clients open now: the current one and the retired ones still serving a stream."""
        return 0 if self._closed else 1 + len(self._retired)

    async def refresh_credentials(self) -> None:
        """Resolve credentials afresh and use them for the streams opened from now on.

        The SDK's resolvers keep temporary credentials until the moment they expire, and a stream
        cannot switch keys midway (its event signatures chain from the request's), so continuing
        past an expiry needs a new resolver and client for the next stream. The old client stays
        open for the streams still using it and is closed once the last of them has closed.
        Conversations sharing the connector that ask at the same time get one refresh, not one each.
        """
        asked_at = self._refreshes
        async with self._refreshing:
            if self._refreshes != asked_at:  # another caller refreshed while this one waited
                return
            client, info = await _build_client(self._settings)
            self._refreshes += 1
            old, self._current, self.info = self._current, _Client(client), info
            if old.streams == 0:
                await _close_client(old)
                return
            self._retired.append(old)
            while len(self._retired) > self.MAX_RETIRED:
                oldest = self._retired.pop(0)
                log.warning("closing an old SDK client with %d stream(s) still open", oldest.streams)
                await _close_client(oldest)

    async def open_stream(self, model_id: str) -> BedrockStream:
        client = self._current
        client.streams += 1  # before the await: a refresh meanwhile must not close it under us
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                sdk_stream = await client.sdk.invoke_model_with_bidirectional_stream(
                    InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id))
        except TimeoutError:
            await self._stream_closed(client)
            raise TransportError("opening the stream timed out", kind="ConnectionError",
                                 retryable=True) from None
        except BaseException as exc:
            await self._stream_closed(client)
            if isinstance(exc, Exception):
                raise translate_error(exc) from exc
            raise
        return BedrockStream(sdk_stream, on_closed=lambda: self._stream_closed(client))

    async def _stream_closed(self, client: _Client) -> None:
        client.streams -= 1
        if client.streams == 0 and client in self._retired:
            self._retired.remove(client)
            await _close_client(client)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for client in (*self._retired, self._current):
            await _close_client(client)
        self._retired.clear()


async def _close_client(client: _Client) -> None:
    await _bounded(client.sdk.close(), CLOSE_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class _Settings:
    region: str | None
    endpoint: str | None
    profile: str | None


async def open_connector(*, region: str | None, endpoint: str | None,
                         profile: str | None = None) -> BedrockConnector:
    """Resolve settings and credentials and build the SDK client.

    Raises CredentialsError / TransportError with an actionable message instead of letting the
    SDK hang on missing credentials.
    """
    install_crt_noise_filter()
    settings = _Settings(region, endpoint, profile)
    client, info = await _build_client(settings)
    return BedrockConnector(client, info, settings)


async def _build_client(settings: _Settings) -> tuple[AsyncBedrockRuntimeClient, ConnectionInfo]:
    check_sdk_files()
    found = run_endpoint(settings.endpoint)
    if found is not None and (problem := endpoint_problem(found[0])) is not None:
        url, source = found
        raise TransportError(f"{source} {url!r} {problem}", kind="ConfigError")
    # smithy's CRT client with a body writer that does not wait for each event's write (crt.py),
    # unless the fast paths are turned off.
    overrides: dict[str, Any] = {"transport": LeanCRTHTTPClient() if fast_paths() else AWSCRTHTTPClient()}
    if settings.region:
        overrides["region"] = settings.region
    if settings.endpoint:
        overrides["endpoint_uri"] = settings.endpoint
    profile = settings.profile
    try:
        config = await AsyncBedrockRuntimeConfig.resolve(profile=profile, **overrides)
    except ProfileNotFoundError as exc:
        detail = str(exc).rstrip(".")
        raise CredentialsError(f"AWS profile not found: {detail}. Check --profile / AWS_PROFILE and "
                               "~/.aws/config.", kind="CredentialsError") from None
    except (ConfigValidationError, SdkConfigError) as exc:
        raise TransportError(
            f"cannot configure Bedrock: {str(exc).rstrip('.')}. "
            "Set model.region in the agent file, or AWS_REGION.",
            kind="ConfigError") from None
    resolved_region = str(config.region)
    chain = await _credentials_chain(profile, resolved_region)
    identity = await _resolve_identity(chain)
    config.aws_credentials_identity_resolver = chain
    info = ConnectionInfo(
        region=resolved_region,
        endpoint=str(settings.endpoint or os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
                     or os.environ.get("AWS_ENDPOINT_URL")
                     or f"https://bedrock-runtime.{resolved_region}.amazonaws.com"),
        credentials_source=_credentials_source(profile, os.environ),
        credentials_expiry=identity.expiration,
    )
    return AsyncBedrockRuntimeClient(config=config), info


async def _credentials_chain(profile: str | None, region: str) -> IdentityChain[AWSCredentialsIdentity]:
    try:
        return await IdentityChain.create(AWSCredentialsIdentity, profile_name=profile,
                                          region_override=region)
    except SmithyError as exc:
        raise CredentialsError(f"cannot set up AWS credentials: {exc}", kind="CredentialsError") from None


async def _resolve_identity(chain: IdentityChain[AWSCredentialsIdentity]) -> AWSCredentialsIdentity:
    try:
        async with asyncio.timeout(CREDENTIALS_TIMEOUT_S):
            return await chain.get_identity(properties={})
    except TimeoutError:
        raise CredentialsError("timed out resolving AWS credentials", kind="CredentialsError") from None
    except SmithyError:
        raise CredentialsError(
            "no AWS credentials found (looked in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "~/.aws/credentials and ~/.aws/config, AWS_PROFILE). Configure credentials "
            "(e.g. `aws configure`, or `eval $(aws configure export-credentials --format env)`), "
            "or run offline against the built-in emulator with --emulate.",
            kind="CredentialsError") from None


def _credentials_source(profile: str | None, env: Mapping[str, str]) -> str:
    if profile:
        return f"profile {profile!r}"
    if env.get("AWS_ACCESS_KEY_ID"):
        return "environment (AWS_ACCESS_KEY_ID)"
    if env.get("AWS_PROFILE"):
        return f"profile {env['AWS_PROFILE']!r} (AWS_PROFILE)"
    return "shared config files (default profile)"


_NOISE = ("AWS_ERROR_HTTP_STREAM_HAS_COMPLETED", "asynchronous generator is already running")


def install_crt_noise_filter() -> None:
    """Drop awscrt's known harmless 'never retrieved' errors from the running loop's handler."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    if getattr(previous, "_runner_crt_filter", False):
        return

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        text = f"{context.get('message', '')} {context.get('exception', '')!r}"
        if any(n in text for n in _NOISE):
            log.debug("suppressed awscrt shutdown noise: %s", text)
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    handler._runner_crt_filter = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
