"""The server's shared state, handed to every front end: settings, auth, capacity, drain, metrics.

Agents: a server serves one or more agents (`agent-run serve A.yaml B.yaml`), each under its
file's `name`; a caller picks one by name (`agent_named`), the first file's being the default.
Conversations of agents whose model is reached the same way (region and endpoint) share one
connector (`connector_for`).

Capacity and drain: a caller is admitted only while the server is neither draining nor full
(`admit()` raises CallerRefused otherwise, counted by reason); the capacity is the worker's,
across its agents. Every admitted conversation is registered until it has ended, so a drain can
wait for them and then end each one in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.models import is_nova2
from runner.serve.auth import token_ok
from runner.serve.errors import CallerRefused, UnknownAgent
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
    twilio_auth_token: str | None = None  # Twilio requests must carry a valid X-Twilio-Signature
    # Proxies whose X-Forwarded-Host / -Proto are believed (addresses or networks; "*" = any).
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    invocation_timeout_s: float = 60.0  # POST /invocations: one turn's answer, at most


class ServeContext:
    """What a front end needs from the server (built by runner.serve.app)."""

    def __init__(self, agents: Sequence[AgentConfig], settings: ServeSettings, *,
                 metrics: Metrics | None = None) -> None:
        served = tuple(agents)
        assert served, "a server serves at least one agent"
        self.agents: dict[str, AgentConfig] = {a.name: a for a in served}  # names checked unique
        self.agent = served[0]  # the default: a caller who names none gets it
        self.settings = settings
        self.metrics = metrics or Metrics()
        for name in self.agents:
            self.metrics.agent_live.labels(agent=name).set(0)  # shown (as 0) before a first caller
        self.connector: Connector | None = None  # the default agent's; set once the server has started
        self.connectors: dict[object, Connector] = {}  # by connector_key(agent)
        self.draining = False
        self._live: set[Conversation] = set()
        self._admitted = 0
        self._changed = asyncio.Event()
        # When /ping's status last changed (Healthy <-> HealthyBusy), Unix seconds: AgentCore
        # Runtime's `time_of_last_update`. The server's start counts as the first change.
        self.status_changed_at = int(time.time())

    # -- for front ends -----------------------------------------------------------------------

    def authorized(self, conn: HTTPConnection) -> bool:
        """Whether the caller may use a caller endpoint (the token, when one is required)."""
        return token_ok(self.settings.token, conn)

    @property
    def accepts_text(self) -> bool:
        """Whether typed input reaches the default agent's model (Nova 2 cross-modal input)."""
        return self.takes_text(self.agent)

    @staticmethod
    def takes_text(agent: AgentConfig) -> bool:
        """Whether typed input reaches `agent`'s model (Nova 2 cross-modal input)."""
        return is_nova2(agent.model.id)

    def agent_named(self, name: str | None) -> AgentConfig:
        """The agent a caller asked for (None or "": the default); raises UnknownAgent."""
        if not name:
            return self.agent
        agent = self.agents.get(name)
        if agent is None:
            raise UnknownAgent(name, self.agents)
        return agent

    def add_tools(self, agent: AgentConfig) -> None:
        """Replace a served agent by the same agent with its tool sources' tools (MCP) added."""
        self.agents[agent.name] = agent
        if self.agent.name == agent.name:
            self.agent = agent

    def connector_key(self, agent: AgentConfig) -> object:
        """Agents with equal keys share a connector: one emulator serves all; else region + endpoint."""
        return None if self.settings.emulate else (agent.model.region, agent.model.endpoint)

    def connector_for(self, agent: AgentConfig) -> Connector:
        connector = self.connectors.get(self.connector_key(agent), self.connector)
        assert connector is not None, "the server has not started"
        return connector

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
    def admit(self, agent: AgentConfig | None = None) -> Iterator[None]:
        """Hold one conversation slot (for `agent`, the default if None); raises CallerRefused when
        there is none."""
        self.check_admission()
        per_agent = self.metrics.agent_live.labels(agent=(agent or self.agent).name)
        self._admitted += 1
        if self._admitted == 1:
            self.status_changed_at = int(time.time())
        self.metrics.live.inc()
        per_agent.inc()
        try:
            yield
        finally:
            self._admitted -= 1
            if self._admitted == 0:
                self.status_changed_at = int(time.time())
            self.metrics.live.dec()
            per_agent.dec()
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
