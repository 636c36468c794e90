"""The server's shared state, handed to every front end: settings, auth, capacity, drain, metrics.

Capacity and drain: a caller is admitted only while the server is neither draining nor full
(`admit()` raises CallerRefused otherwise, counted by reason). Every admitted conversation is
registered until it has ended, so a drain can wait for them and then end each one in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.models import is_nova2
from runner.serve.auth import token_ok
from runner.serve.errors import CallerRefused
from runner.serve.metrics import Metrics

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from runner.config.model import AgentConfig
    from runner.conversation import Conversation
    from runner.transports.base import Connector


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # callers must present it (?token= or Authorization: Bearer)
    max_conversations: int = 20
    drain_timeout_s: float = 30.0
    transcripts: Path | None = None  # one file per conversation in this directory
    stdout_transcripts: bool = False  # JSON lines on stdout (for log shippers), one "conversation" id each
    emulate: bool = False
    scenario: Path | None = None
    var_overrides: tuple[tuple[str, str], ...] = ()  # --var, applied under each call's own vars


class ServeContext:
    """What a front end needs from the server (built by runner.serve.app)."""

    def __init__(self, agent: AgentConfig, settings: ServeSettings, *,
                 metrics: Metrics | None = None) -> None:
        self.agent = agent
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.connector: Connector | None = None  # set once the server has started
        self.draining = False
        self._live: set[Conversation] = set()
        self._admitted = 0
        self._changed = asyncio.Event()

    # -- for front ends -----------------------------------------------------------------------

    def authorized(self, conn: HTTPConnection) -> bool:
        """Whether the caller may use a caller endpoint (the token, when one is required)."""
        return token_ok(self.settings.token, conn)

    @property
    def accepts_text(self) -> bool:
        """Whether typed input reaches the model (Nova 2 cross-modal input)."""
        return is_nova2(self.agent.model.id)

    def refusal(self) -> str | None:
        """Why a new caller would be refused now (draining, full), or None."""
        if self.draining:
            return "server is shutting down: try again (another worker)"
        if self._admitted >= self.settings.max_conversations:
            return f"server is full ({self.settings.max_conversations} conversations): try again later"
        return None

    # -- for the server -----------------------------------------------------------------------

    @property
    def live_count(self) -> int:
        return self._admitted

    @property
    def busy(self) -> bool:
        return self._admitted > 0

    def check_admission(self) -> None:
        """Raise CallerRefused (counted) when a new caller would be refused now.

        A front end calls it before greeting a caller; `converse` checks again as it takes a slot.
        """
        reason = self.refusal()
        if reason is not None:
            self.metrics.refused.labels(reason="draining" if self.draining else "full").inc()
            raise CallerRefused(reason)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one conversation slot; raises CallerRefused when there is none."""
        self.check_admission()
        self._admitted += 1
        self.metrics.live.inc()
        try:
            yield
        finally:
            self._admitted -= 1
            self.metrics.live.dec()
            self._changed.set()

    @contextlib.contextmanager
    def registered(self, conversation: Conversation) -> Iterator[None]:
        self._live.add(conversation)
        try:
            yield
        finally:
            self._live.discard(conversation)

    def stop_all(self, reason: str) -> None:
        """End every live conversation now, each in the documented order (sessionEnd, transcript end)."""
        for conversation in list(self._live):
            conversation.request_stop(reason, graceful=False)

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109  (running out is an outcome)
        """Wait until no conversation is live; False when `timeout` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                while self._admitted:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True
