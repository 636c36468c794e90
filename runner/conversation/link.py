"""One Nova Sonic stream (a Link) and the two tasks that serve it.

The writer is the only sender, so the atomically queued text and tool blocks of the Session are
never split by audio; the reader feeds every payload to the Session and hands the decoded events
on. Neither raises into the conversation: a failure is recorded on the link (`fail`) and the
supervisor decides what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from runner.errors import ProtocolError, TransportError
from runner.protocol.events import OutputEvent
from runner.protocol.session import Session
from runner.transports.base import Stream


@dataclass
class Link:
    """One Nova Sonic stream and the tasks that serve it."""

    index: int
    session: Session
    stream: Stream
    started_at: float
    reason: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    writer_idle: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failure: TransportError | None = None
    closing: bool = False
    served_turn: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Called once the link is done (failed or its reader ended): the supervisor sleeps on one
    # event rather than waiting on `done` too (that took two tasks per wait).
    on_done: Callable[[], None] | None = None

    def kick(self) -> None:
        """The session has something to send: wake the writer."""
        self.writer_idle.clear()
        self.wake.set()

    def fail(self, failure: TransportError) -> None:
        if self.failure is None and not self.closing:
            self.failure = failure
        self.end()

    def end(self) -> None:
        """The link is done: nothing more comes from it."""
        self.done.set()
        if self.on_done is not None:
            self.on_done()

    @property
    def usable(self) -> bool:
        """Neither closing nor failed: the session may still send."""
        return not self.closing and self.failure is None


class DeadStream:
    """Stands in for a stream that could not be opened, so closing is uniform."""

    async def send(self, payload: bytes) -> None:
        raise TransportError("stream not open", kind="ConnectionError", retryable=True)

    async def wait_accepted(self) -> None:
        raise TransportError("stream not open", kind="ConnectionError", retryable=True)

    async def receive(self) -> bytes | None:
        return None

    async def close_input(self, limit_s: float) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def write_pump(link: Link, trace: Callable[[bytes], None] | None) -> None:
    """Send what the session queued, in order, each time the link is kicked."""
    try:
        while True:
            await link.wake.wait()
            link.wake.clear()
            for payload in link.session.data_to_send():
                if trace is not None:
                    trace(payload)
                await link.stream.send(payload)
            if not link.wake.is_set():
                link.writer_idle.set()
    except TransportError as exc:
        link.fail(exc)


async def read_pump(link: Link, *, accepted: Callable[[], None],
                    on_event: Callable[[Link, OutputEvent], Awaitable[None]]) -> None:
    """Wait for the service to accept the stream, then hand on every event it sends."""
    try:
        await link.stream.wait_accepted()
        accepted()
        link.accepted.set()
        while True:
            payload = await link.stream.receive()
            if payload is None:
                if not link.closing:
                    link.fail(TransportError("the service closed the stream unexpectedly",
                                             kind="StreamReset", retryable=True))
                return
            for event in link.session.receive_data(payload):
                await on_event(link, event)
    except TransportError as exc:
        link.fail(exc)
    except ProtocolError as exc:
        link.fail(TransportError(f"malformed event from the service: {exc}",
                                 kind="InvalidEventBytes", retryable=True))
    finally:
        link.end()
