"""Acknowledgements on the emulator's connections, with the real SDK (awscrt, Nagle on) over TLS:
TCP's (QUICKACK) and HTTP/2 flow control's.

TCP_QUICKACK:

awscrt never sets TCP_NODELAY, so each small write of the SDK waits until the emulator has ACKed
what it sent before. Linux delays that ACK (up to ~40 ms) while the socket is in "pingpong" mode,
which it enters when the emulator sends soon after receiving. `getsockopt(TCP_QUICKACK)` reads
1 while the socket is out of that mode, i.e. while every segment read is ACKed at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import h2.events
import pytest

from runner.emulator import server
from runner.emulator.api import EmulatorStream, Rejection, StreamRequest
from runner.emulator.server import Emulator
from tests.emulator.raw_client import RawClient
from tests.emulator.test_wire import chunk, close_input, make_client, open_stream, run

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(socket, "TCP_QUICKACK"),
    reason="TCP_QUICKACK and its getsockopt are Linux's")

EVENTS = 40


class EchoOrSink:
    """"echo": one output event per input event (the emulator writes between reads, as a talking
    model does); any other model id: reads only."""

    def admit(self, request: StreamRequest) -> Rejection | None:
        return None

    async def handle(self, stream: EmulatorStream) -> None:
        while (payload := await stream.receive()) is not None:
            if stream.request.model_id == "echo":
                await stream.send_event({"event": {"textOutput": {"content": json.loads(payload)["n"]}}})
        await stream.end()


@pytest.fixture(scope="module")
def emulator(background_emulator: Callable[[EchoOrSink], Emulator]) -> Emulator:
    return background_emulator(EchoOrSink())


@pytest.fixture
def sdk_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    return emulator


async def _session(emulator: Emulator, model: str) -> int:
    """EVENTS input events 10 ms apart (each read on its own, after the answer to the one before
    was written); returns the output events received."""
    client = await make_client(emulator)
    stream = await open_stream(client, model)
    received = 0

    async def drain() -> None:
        nonlocal received
        _, receiver = await stream.await_output()
        while await receiver.receive() is not None:
            received += 1

    async with asyncio.TaskGroup() as tg:
        tg.create_task(drain())
        for n in range(EVENTS):
            await stream.input_stream.send(chunk({"n": n}))
            await asyncio.sleep(0.01)
        await close_input(stream)
    await client.close()
    return received


def _probe(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Records, for each read that carries DATA, the socket's QUICKACK state when the wire layer
    starts handling it, and counts the QUICKACK re-arms."""
    states: list[int] = []
    arms = [0]
    first_data: set[int] = set()
    received, dispatch, quickack = (server._Connection.data_received, server._Connection._dispatch,
                                    server._Connection._quickack)

    def on_received(self: server._Connection, data: bytes) -> None:
        first_data.add(id(self))
        received(self, data)

    def on_dispatch(self: server._Connection, event: Any) -> None:
        if id(self) in first_data and isinstance(event, h2.events.DataReceived):
            first_data.discard(id(self))
            states.append(self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
        dispatch(self, event)

    def on_quickack(self: server._Connection) -> None:
        arms[0] += 1
        quickack(self)

    monkeypatch.setattr(server._Connection, "data_received", on_received)
    monkeypatch.setattr(server._Connection, "_dispatch", on_dispatch)
    monkeypatch.setattr(server._Connection, "_quickack", on_quickack)
    return states, arms


@linux_only
def test_reads_after_writes_are_acked_at_once(sdk_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator answers every event, so the kernel would delay its ACKs (and with them the
    SDK's next write); each read finds the socket out of pingpong mode all the same."""
    states, arms = _probe(monkeypatch)
    assert run(_session(sdk_env, "echo")) == EVENTS
    assert len(states) >= EVENTS // 2, states
    # Without the re-arm every read finds the socket in pingpong mode (0). Now and then (about
    # one run in ten here) one read does, when the kernel transmits our answer itself right as
    # the next segment arrives; the read after it re-arms again.
    assert states.count(0) <= 2, states
    assert arms[0] >= len(states)


def test_input_data_is_handed_back_to_the_connection_window(sdk_env: Emulator) -> None:
    """The wire layer hands input back to h2's flow control in batches; whatever a stream still
    holds when its input ends goes back too (here the client ends it with END_STREAM alone, no
    signed empty event), or every short stream would shrink the connection window that later
    streams on the connection share."""
    raw = RawClient(sdk_env.env(), "sink")
    try:
        raw.send(*[{"n": n} for n in range(3)])  # ~1 kB: less than a batch
        raw.h2.end_stream(raw.stream_id)
        raw.flush()
        raw.read_until(lambda client: False)  # until the emulator ends the stream
        assert raw.stream_ended
        deadline = time.monotonic() + 5
        while any(conn.streams for conn in list(sdk_env.connections)) and time.monotonic() < deadline:
            time.sleep(0.01)
        held = []
        for conn in list(sdk_env.connections):
            window = conn.h2._inbound_flow_control_window_manager
            held.append(window.max_window_size - window.current_window_size - window._bytes_processed)
    finally:
        raw.sock.close()
    assert held and held == [0] * len(held), held
