"""Pieces shared by tests that drive a text conversation in-process with `run_agent` (the real engine,
the SDK over TLS and the in-process emulator; the environment is restored by tests/conftest.py's
`restore_environ`): a tap that wakes the driver at END_TURN, and an observer keeping the run's
Conversation."""

from __future__ import annotations

import asyncio
from typing import Any

from runner.conversation import Conversation
from runner.protocol.events import ContentEnd, OutputEvent


class EndOfTurn:
    """An EventTap whose `ended` is set at each END_TURN."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    def output(self, event: OutputEvent, at: float) -> None:
        if isinstance(event, ContentEnd) and event.stop_reason == "END_TURN":
            self.ended.set()

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        pass


class KeepConversation:
    """A RunObserver that keeps the run's Conversation."""

    conversation: Conversation | None = None

    def emulator_started(self, emulator: object) -> None:
        pass

    def conversation_finished(self, conversation: Conversation) -> None:
        self.conversation = conversation
