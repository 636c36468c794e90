"""A program (a test runner) drives a text conversation: run_agent with a QueueTextInput and a tap.

The run is the real engine, the real SDK over TLS and the in-process emulator (orders scenario:
the first typed line asks for an order, the emulator calls trackOrderTool).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runner.config.loader import load_agent
from runner.console import Console
from runner.conversation import QueueTextInput
from runner.engine import RunOptions, run_agent
from runner.errors import RunnerError
from runner.protocol.events import OutputEvent
from tests.conversation.text_run_helpers import EndOfTurn, KeepConversation

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("restore_environ")


class Turns(EndOfTurn):
    """A tap that wakes the driver at each END_TURN and keeps what was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, dict[str, Any]]] = []  # what the runner sent
        self.times: list[float] = []

    def output(self, event: OutputEvent, at: float) -> None:
        self.times.append(at)
        super().output(event, at)

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        self.records.append((kind, fields))


def test_a_program_types_a_turn_and_sees_it_happen() -> None:
    agent = load_agent(REPO / "agents" / "orders.yaml")
    text, turns, observer = QueueTextInput(), Turns(), KeepConversation()
    options = RunOptions(emulate=True, scenario=REPO / "samples" / "orders.scenario.yaml", text=True,
                         text_input=text, mute=True, taps=(turns,), idle_exit_s=0.5)

    async def main() -> int:
        async with asyncio.timeout(60):
            run = asyncio.create_task(run_agent(agent, options, Console(quiet=True), observer))
            await text.put("Where is my order 12345?")
            await turns.ended.wait()  # the answer (after the tool call) is over
            await text.put(None)
            return await run

    assert asyncio.run(main()) == 0
    assert observer.conversation is not None
    entries = observer.conversation.transcript.entries
    assert [e["text"] for e in entries if e["type"] == "user"] == ["Where is my order 12345?"]
    assert [e["name"] for e in entries if e["type"] == "tool_call"] == ["trackOrderTool"]
    [typed, result] = turns.records
    assert typed == ("user_text", {"text": "Where is my order 12345?"})
    call = next(e for e in entries if e["type"] == "tool_call")
    assert result == ("tool_result", {"name": "trackOrderTool", "tool_use_id": call["tool_use_id"]})
    assert turns.times == sorted(turns.times)  # the conversation's monotonic clock


def test_a_legacy_model_is_refused_before_anything_starts() -> None:
    agent = load_agent(REPO / "tests" / "data" / "e2e" / "stubborn.yaml")
    options = RunOptions(emulate=True, text=True, text_input=QueueTextInput())
    with pytest.raises(RunnerError, match="answers speech only"):
        asyncio.run(run_agent(agent, options, Console(quiet=True)))
