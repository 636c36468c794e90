"""The transport seam: payload bytes in, payload bytes out.

A Connector is opened once per run (it owns credentials and the HTTP client); each Nova Sonic
stream is a Stream opened from it, so a conversation can rotate streams without re-resolving
credentials or reconnecting TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Where a connector talks to and where its settings came from (for status and doctor)."""

    region: str
    endpoint: str
    credentials_source: str
    credentials_expiry: datetime | None


class Stream(Protocol):
    """One bidirectional Nova Sonic stream."""

    async def send(self, payload: bytes) -> None:
        """Send one input event (UTF-8 JSON). Raises TransportError once the stream is dead."""

    async def wait_accepted(self) -> None:
        """Wait until the service accepted the request (response headers); raises TransportError."""

    async def receive(self) -> bytes | None:
        """The next output event payload; None when the stream ended cleanly.

        Raises TransportError (with the service's exception kind) when the service fails the stream.
        """

    async def close_input(self, limit_s: float) -> None:
        """Signal the end of input (after sessionEnd), waiting at most `limit_s`. Idempotent."""

    async def aclose(self) -> None:
        """Close the input side and release the stream within bounded time. Idempotent."""


class Connector(Protocol):
    info: ConnectionInfo

    async def open_stream(self, model_id: str) -> Stream:
        """Open a new stream for `model_id`."""

    async def refresh_credentials(self) -> None:
        """Resolve credentials afresh for the streams opened from now on (updates `info`)."""

    async def aclose(self) -> None:
        """Release the HTTP client. Idempotent."""


class ConnectorWrapper:
    """A Connector that passes everything on to `inner`: a wrapper that observes streams (recording,
    metrics, the turn meter) overrides `open_stream` only, and stays a Connector as the inner one changes
    (`info` after a credentials refresh is always the inner connector's)."""

    def __init__(self, inner: Connector) -> None:
        self._inner = inner

    @property
    def info(self) -> ConnectionInfo:
        return self._inner.info

    @info.setter
    def info(self, value: ConnectionInfo) -> None:
        self._inner.info = value

    async def open_stream(self, model_id: str) -> Stream:
        return await self._inner.open_stream(model_id)

    async def refresh_credentials(self) -> None:
        await self._inner.refresh_credentials()

    async def aclose(self) -> None:
        await self._inner.aclose()
