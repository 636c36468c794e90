"""Pieces shared by tests that drive a text conversation in-process with `run_agent` (the real engine,
the SDK over TLS and the in-process emulator): the environment restored after the emulator set its
CA and credentials there, a tap that wakes the driver at END_TURN, and an observer keeping the run's
Conversation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from runner.conversation import Conversation
from runner.protocol.events import ContentEnd, OutputEvent


@pytest.fixture
def restore_environ() -> Iterator[None]:
    saved = dict(os.environ)  # the emulator's CA and credentials are put in the environment
    yield
    os.environ.clear()
    os.environ.update(saved)


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
