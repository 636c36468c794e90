"""What the parts of one conversation share while it runs: why it stops, which stream is current,
what is busy, and the task group every task of the run belongs to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.conversation.link import Link
    from runner.protocol.session import Session


@dataclass
class StopRequest:
    """Why the conversation is stopping; `code` becomes the process exit code."""

    reason: str
    code: int = 0
    graceful: bool = True
    # The run failed (the reason is an error message for stderr), e.g. an output that broke.
    error: bool = False


class Stopped(Exception):
    """Raised inside the TaskGroup to unwind every task once closing is done."""


class Live:
    """The shared state of a running conversation. Each field has one writer (named below); the
    others only read it, so the parts need no locks (they all run on one event loop)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.session: Session | None = None  # supervisor: where the user's audio and text go now
        self.first_session = asyncio.Event()  # supervisor: set once `session` is first assigned
        self.link: Link | None = None  # supervisor: the current stream
        self.tools_running = 0  # tool calls
        self.last_activity = clock()  # reader, tool calls, typed text: for the idle exit
        self.last_answer_at: float | None = None  # output router: the last END_TURN or interruption
        self.stop: StopRequest | None = None  # request_stop (first reason wins)
        self.stop_event = asyncio.Event()
        # Set by poke(): something may have moved a deadline of the supervisor's earlier (see
        # Supervisor._watch, which otherwise sleeps until the next one instead of polling).
        self.changed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None

    def request_stop(self, reason: str, *, code: int = 0, graceful: bool = True,
                     error: bool = False) -> None:
        """Ask the conversation to end (first reason wins). Safe from signal handlers."""
        if self.stop is None:
            self.stop = StopRequest(reason, code, graceful, error)
        self.stop_event.set()
        self.changed.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    async def stop_within(self, delay: float) -> bool:
        """Sleep `delay` s unless a stop is requested first; True when stopping."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.stop_event.wait()
        return self.stop_event.is_set()

    def poke(self) -> None:
        """Wake the supervisor now: a deadline may be due sooner than it planned (an answer
        ended, the input finished, the user or the assistant became busy, a call is closing)."""
        self.changed.set()

    async def wait_changed(self, until: float | None) -> None:
        """Sleep until `until` (this clock) or a poke, whichever comes first; no task is created."""
        if self.changed.is_set():
            return
        if until is None:
            await self.changed.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, until - self.clock())):
                await self.changed.wait()

    def touch(self) -> None:
        """Something happened: the idle exit counts from now."""
        self.last_activity = self.clock()

    def bind(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task of the run (the run's TaskGroup owns it: no orphan tasks)."""
        assert self._tg is not None, "spawn() before the conversation runs"
        return self._tg.create_task(coro, name=name)
