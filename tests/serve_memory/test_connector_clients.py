"""BedrockConnector keeps a bounded number of SDK clients over credential refreshes.

A server's connector lives as long as the worker; every credential refresh builds a new SDK
client (a stream cannot switch keys midway). The old one must be closed once the last stream
opened on it has closed, not kept until the worker exits. The real SDK client over TLS against the
in-process emulator; its `close` is wrapped (still called) only to see when it happens.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from runner.emulator.local import local_emulator
from runner.transports.bedrock import BedrockConnector, BedrockStream, open_connector

MODEL = "amazon.nova-2-sonic-v1:0"

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("restore_environ")]


def watch_close(connector: BedrockConnector, closed: list[str], name: str) -> Any:
    """Wrap the current SDK client's close to record `name` when it is called; the client."""
    client = connector._current.sdk
    real = client.close

    async def close() -> None:
        closed.append(name)
        await real()

    client.close = close  # type: ignore[method-assign]
    return client


async def opened(connector: BedrockConnector) -> BedrockStream:
    """A stream on the connector's current client (a real HTTP/2 request to the emulator)."""
    stream = await connector.open_stream(MODEL)
    assert isinstance(stream, BedrockStream)
    return stream


def test_a_retired_client_closes_when_its_last_stream_closes() -> None:
    async def main() -> None:
        closed: list[str] = []
        async with local_emulator() as emulator:
            os.environ.update(emulator.env())
            connector = await open_connector(region="us-east-1", endpoint=emulator.endpoint)
            try:
                first = watch_close(connector, closed, "first")
                a = await opened(connector)
                b = await opened(connector)
                await connector.refresh_credentials()
                second = watch_close(connector, closed, "second")
                assert second is not first
                assert connector.clients == 2 and closed == []  # streams a and b still use the first
                c = await opened(connector)  # on the second client
                await a.aclose()
                assert closed == [] and connector.clients == 2
                await b.aclose()
                assert closed == ["first"] and connector.clients == 1
                await c.aclose()
                assert closed == ["first"]  # the current client stays open for the next stream
                d = await opened(connector)
                await d.aclose()
                # No stream open: a refresh closes the old client at once.
                await connector.refresh_credentials()
                assert closed == ["first", "second"] and connector.clients == 1
            finally:
                await connector.aclose()
            assert connector.clients == 0

    asyncio.run(main())


def test_retired_clients_are_bounded_even_when_streams_are_never_closed() -> None:
    async def main() -> None:
        closed: list[str] = []
        async with local_emulator() as emulator:
            os.environ.update(emulator.env())
            connector = await open_connector(region="us-east-1", endpoint=emulator.endpoint)
            streams = []
            try:
                for i in range(BedrockConnector.MAX_RETIRED + 3):
                    watch_close(connector, closed, f"client{i}")
                    streams.append(await opened(connector))
                    await connector.refresh_credentials()
                    assert connector.clients <= BedrockConnector.MAX_RETIRED + 1
                assert closed == ["client0", "client1", "client2"]  # the oldest, first
            finally:
                for stream in streams:
                    await stream.aclose()
                await connector.aclose()

    asyncio.run(main())


def test_refreshes_asked_at_the_same_time_build_one_client() -> None:
    async def main() -> None:
        closed: list[str] = []
        async with local_emulator() as emulator:
            os.environ.update(emulator.env())
            connector = await open_connector(region="us-east-1", endpoint=emulator.endpoint)
            try:
                watch_close(connector, closed, "first")
                await asyncio.gather(*(connector.refresh_credentials() for _ in range(5)))
                assert closed == ["first"] and connector.clients == 1
                watch_close(connector, closed, "second")
                await connector.refresh_credentials()  # a later one refreshes again
                assert closed == ["first", "second"]
            finally:
                await connector.aclose()

    asyncio.run(main())
