"""The server's shared state, handed to every front end: settings, auth, capacity, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from runner.config.model import AgentConfig


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # callers must present it (?token= or Authorization: Bearer)
    max_conversations: int = 20
    drain_timeout_s: float = 30.0
    transcripts: Path | None = None  # one file per conversation here; None with stdout_transcripts
    stdout_transcripts: bool = False  # JSON lines on stdout (for log shippers)
    emulate: bool = False
    scenario: Path | None = None


class ServeContext:
    """What a front end needs from the server (filled in by runner.serve.app)."""

    def __init__(self, agent: AgentConfig, settings: ServeSettings) -> None:
        self.agent = agent
        self.settings = settings

    def authorized(self, conn: HTTPConnection) -> bool:
        """Whether the caller may use a caller endpoint (the token, when one is required)."""
        raise NotImplementedError  # filled in by the next commit
