"""smithy's AWSCRTHTTPClient with a lean HTTP/2 request-body writer (issue 11).

Every input event of a Bedrock stream is one chunk of the request body. awscrt's stock writer
(`AIOHttp2ClientStream._set_request_body_generator`, awscrt 0.32.2) awaits each chunk's write
completion, which the CRT thread signals with `call_soon_threadsafe`: per event that is a second
step of the writer task, a self-pipe wake-up of the loop and a `_chain_future` callback
(~150-200 µs on a cold cache, at 31 events/s for 32 ms chunks). The writer here hands each chunk
to CRT with the manual-write call (`awscrt.http.Http2ClientStream.write_data`, which returns a
concurrent Future) and does not wait for it: completions are only looked at when the next chunk
comes, and the loop is woken for one only when MAX_WRITES_IN_FLIGHT writes are outstanding, so
back-pressure (a peer that stops reading) still reaches `input_stream.send()` through smithy's
16-chunk AsyncBytesProvider.

Everything else is smithy's: connection pool, TLS context (SSL_CERT_FILE), timeouts, HTTP/1.1
handling. awscrt chooses the connection class itself (`_HttpClientConnectionCore`), so the
lean stream is created through a small view of the pooled connection that smithy's `send()` uses.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future
from copy import deepcopy
from io import BytesIO
from typing import Any

from awscrt.aio.http import AIOHttp2ClientStream
from awscrt.http import Http2ClientStream, HttpVersion
from smithy_core.interfaces import URI
from smithy_http.aio.crt import AWSCRTHTTPClient

# Writes handed to CRT and not yet completed before the writer waits for the oldest. A write
# normally completes within a millisecond, so at real-time rates the writer never waits; the
# bound only matters when the peer stops reading (HTTP/2 flow control), and keeps what CRT holds
# to 16 events (~64 KB of audio) on top of smithy's 16-chunk buffer.
MAX_WRITES_IN_FLIGHT = 16


class LeanCRTHTTPClient(AWSCRTHTTPClient):
    """AWSCRTHTTPClient whose HTTP/2 request bodies are written by `LeanHttp2Stream`."""

    async def _get_connection(self, url: URI) -> Any:
        connection = await super()._get_connection(url)
        if connection.version is HttpVersion.Http2:
            return _LeanConnectionView(connection)
        return connection  # HTTP/1.1: smithy buffers the body itself, no writer involved

    def __deepcopy__(self, memo: Any) -> LeanCRTHTTPClient:
        # smithy's __deepcopy__ would hand back a stock AWSCRTHTTPClient. (The SDK's config shares
        # its transport when it is deep-copied, but a copy of the client itself must stay lean.)
        return LeanCRTHTTPClient(eventloop=self._eventloop, client_config=deepcopy(self._config, memo))


class _LeanConnectionView:
    """What smithy's `send()` uses of a pooled HTTP/2 connection (`version`, `request()`),
    opening `LeanHttp2Stream`s on it. The pool keeps the real connection."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.version = connection.version

    def request(self, request: Any, request_body_generator: AsyncIterator[bytes] | None = None,
                loop: asyncio.AbstractEventLoop | None = None) -> LeanHttp2Stream:
        return LeanHttp2Stream(self._connection, request, request_body_generator, loop)


class LeanHttp2Stream(AIOHttp2ClientStream):  # type: ignore[misc]  # awscrt ships no type hints
    """An HTTP/2 client stream whose body writer does not wait for each write to complete."""

    # awscrt's public manual-write call: queue one DATA write on this stream, get a concurrent
    # Future that the CRT thread completes. Its only state is that Future (thread-safe).
    write_data = Http2ClientStream.write_data

    async def _set_request_body_generator(self, body_iterator: AsyncIterator[bytes]) -> None:
        in_flight: deque[Future[None]] = deque()
        cancelled = False
        try:
            async for chunk in body_iterator:
                while in_flight and in_flight[0].done():
                    in_flight.popleft().result()  # a failed write ends the writer with its error
                if len(in_flight) >= MAX_WRITES_IN_FLIGHT:
                    await asyncio.wrap_future(in_flight.popleft(), loop=self._loop)
                in_flight.append(self.write_data(BytesIO(chunk), False))
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            # END_STREAM exactly once, on every path. CRT sends a stream's writes in the order
            # they were queued, so it goes after every earlier chunk without waiting for them.
            end = self.write_data(None, True)
            if not cancelled:
                # As the stock writer does: the writer ends when the body is really sent, and a
                # stream that has already ended (reset, dropped) fails here.
                await asyncio.wrap_future(end, loop=self._loop)
        for write in in_flight:  # complete by now: CRT completes a stream's writes in order
            if write.done():  # (never block the loop on one, whatever CRT does)
                write.result()
