"""`_Stream.receive_within`: receive() bounded by a timer (what NovaHandler waits with), over a
real TLS + HTTP/2 connection from the raw client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from runner.emulator.api import TIMED_OUT, EmulatorStream, Rejection, StreamRequest
from runner.emulator.server import Emulator
from tests.emulator.raw_client import RawClient


class Within:
    """Records what each receive_within returns (and how long the first one waited)."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def admit(self, request: StreamRequest) -> Rejection | None:
        return None

    async def handle(self, stream: EmulatorStream) -> None:
        receive_within = stream.receive_within  # type: ignore[attr-defined]  # the emulator's _Stream
        started = time.monotonic()
        first = await receive_within(0.3)  # the client sends nothing yet
        self.results.append((first is TIMED_OUT, time.monotonic() - started))
        self.results.append(await receive_within(10))  # the client's first event
        await asyncio.sleep(0.3)  # its second event arrives meanwhile
        self.results.append(await receive_within(0))  # already there: taken, not timed out
        self.results.append(await receive_within(10))  # END_STREAM: None
        self.results.append(await receive_within(10))  # and None again
        await stream.end()


@pytest.fixture(scope="module")
def within() -> Within:
    return Within()


@pytest.fixture(scope="module")
def emulator(background_emulator: Callable[[Within], Emulator], within: Within) -> Emulator:
    return background_emulator(within)


def test_receive_within_times_out_then_takes_events_in_order(emulator: Emulator, within: Within) -> None:
    raw = RawClient(emulator.env(), "within")
    try:
        time.sleep(0.6)
        raw.send({"n": 1}, {"n": 2})
        raw.h2.end_stream(raw.stream_id)
        raw.flush()
        raw.read_until(lambda client: False)
    finally:
        raw.sock.close()
    assert raw.stream_ended
    (timed_out, waited), first, second, end, again = within.results
    assert timed_out and 0.25 < waited < 0.6
    assert json.loads(first) == {"n": 1} and json.loads(second) == {"n": 2}
    assert end is None and again is None
