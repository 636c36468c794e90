"""The seam between the emulator's wire layer (server.py) and its model behaviour (nova.py).

The wire layer terminates TLS and HTTP/2, checks SigV4 request and chunk signatures, and
unwraps/wraps AWS event-stream frames. For every accepted request it hands the behaviour an
EmulatorStream, which deals only in Nova Sonic JSON events and Bedrock error kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

# Event-stream exception members Bedrock uses (`:exception-type` header values).
EXCEPTION_KINDS: tuple[str, ...] = (
    "validationException",
    "modelTimeoutException",
    "throttlingException",
    "modelStreamErrorException",
    "internalServerException",
    "serviceUnavailableException",
)


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What is known about a request before its stream is accepted."""

    model_id: str
    request_id: str
    # 1 for the first request this emulator has seen, 2 for the next, ...
    sequence: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """Refuse a request at the HTTP level (e.g. throttling on connect).

    Sent as `:status` + `x-amzn-errortype: <error_type>` + JSON `{"message": ...}`, which makes the
    SDK raise the modeled exception named `error_type` from `await_output()`.
    """

    status: int
    error_type: str
    message: str


class EmulatorStream(Protocol):
    """One accepted bidirectional stream, seen from the model's side."""

    request: StreamRequest

    async def receive(self) -> bytes | None:
        """The next input event's payload (the Nova JSON bytes the client sent), or None once the
        client has closed its input (signed empty frame / END_STREAM) or the stream is gone."""

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """Send one Nova output event (`{"event": {...}}`) as an event-stream `chunk` message."""

    async def send_exception(self, kind: str, message: str) -> None:
        """Send a modeled exception (`kind` in EXCEPTION_KINDS) and end the response stream."""

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes into the response body (fault injection: invalid event bytes)."""

    async def reset(self) -> None:
        """Abort the stream with HTTP/2 RST_STREAM."""

    async def end(self) -> None:
        """End the response stream cleanly (END_STREAM). Idempotent."""

    @property
    def closed(self) -> bool:
        """True once the stream has ended, been reset, or its connection dropped."""


# What `_Stream.receive()` returns (this very object: compare with `is`) after an inline consumer
# (set with `set_inline`) took an event and asked for the handler's attention.
INLINE_TAKEN: Final[bytes] = bytes(bytearray(b"(taken inline)"))
# What `_Stream.receive_within()` returns (this very object) when nothing came in time.
TIMED_OUT: Final[bytes] = bytes(bytearray(b"(timed out)"))


class StreamHandler(Protocol):
    """The model behaviour plugged into the server."""

    def admit(self, request: StreamRequest) -> Rejection | None:
        """Accept (None) or refuse a request before any event flows."""

    async def handle(self, stream: EmulatorStream) -> None:
        """Run one session to completion. Must return (not hang) once `stream.closed`."""


async def read_into(stream: EmulatorStream, inbox: asyncio.Queue[bytes | None]) -> None:
    """Move a stream's input events into a bounded inbox until the client ends its input (None):
    the handler reads at its own pace, and a full inbox holds the client back (HTTP/2 flow control)."""
    while True:
        payload = await stream.receive()
        await inbox.put(payload)
        if payload is None:
            return
