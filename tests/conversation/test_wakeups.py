"""An idle conversation does not poll: the supervisor sleeps until a deadline is due.

Each loop wake-up costs a session CPU (~150 us here, bench/README.md), so the conversation's stop
checks (rotation, idle exit, max duration, call control, the turn meter's close) run when one of
their deadlines comes or when an event moves one nearer, never on a timer of their own. The run
is the real engine, the real SDK over TLS and the in-process emulator, in text mode; a typed line
is answered, the turn closes, then nothing happens for 2 s. Before this, the supervisor woke every
0.1 s (20 checks in those 2 s) and started two tasks each time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runner.config.loader import load_agent
from runner.console import Console
from runner.conversation import Conversation, QueueTextInput
from runner.engine import RunOptions, run_agent
from tests.conversation.text_run_helpers import EndOfTurn, KeepConversation

REPO = Path(__file__).resolve().parents[2]
IDLE_S = 2.0
# Generous: an idle conversation needs none; a 10 Hz poll would make 20 checks and 40 tasks.
MAX_CHECKS = 4
MAX_TASKS = 8
pytestmark = pytest.mark.usefixtures("restore_environ")


def test_an_idle_conversation_wakes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[float] = []
    real_tick = Conversation._tick

    def counted_tick(self: Conversation, now: float) -> None:
        checks.append(now)
        real_tick(self, now)

    monkeypatch.setattr(Conversation, "_tick", counted_tick)
    agent = load_agent(REPO / "agents" / "orders.yaml")
    text, answers, observer = QueueTextInput(), EndOfTurn(), KeepConversation()
    options = RunOptions(emulate=True, scenario=REPO / "samples" / "orders.scenario.yaml", text=True,
                         text_input=text, mute=True, taps=(answers,), idle_exit_s=0.5)
    tasks: list[str] = []

    async def main() -> tuple[int, int, int, float]:
        loop = asyncio.get_running_loop()

        def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            task = asyncio.Task(coro, loop=loop, **kwargs)
            tasks.append(task.get_name())
            return task

        loop.set_task_factory(counting_factory)  # type: ignore[arg-type]
        async with asyncio.timeout(60):
            run = asyncio.create_task(run_agent(agent, options, Console(quiet=True), observer))
            await text.put("Hello there")
            await answers.ended.wait()
            await asyncio.sleep(1.5)  # the answer has played and its turn closed (1 s after END_TURN)
            checks_before, tasks_before = len(checks), len(tasks)
            await asyncio.sleep(IDLE_S)
            idle_checks, idle_tasks = len(checks) - checks_before, len(tasks) - tasks_before
            await text.put(None)
            ended_from = loop.time()
            code = await run
            return code, idle_checks, idle_tasks, loop.time() - ended_from

    code, idle_checks, idle_tasks, exit_s = asyncio.run(main())
    assert code == 0
    assert idle_checks <= MAX_CHECKS, f"{idle_checks} stop checks in {IDLE_S} s of an idle conversation"
    assert idle_tasks <= MAX_TASKS, f"{idle_tasks} tasks started in {IDLE_S} s of an idle conversation"
    # The idle exit (0.5 s after the input ended) still ends the run, without a poll to notice it.
    assert exit_s < 5.0
    assert observer.conversation is not None
    assert any(e["type"] == "turn" for e in observer.conversation.transcript.entries)


def test_call_clock_says_when_it_next_acts() -> None:
    """CallClock's next deadline (sans-IO): the supervisor sleeps until it instead of stepping it."""
    from runner.config.model import InactivityConfig
    from runner.conversation.control import STEP_S, Activity, CallClock, CallControlOptions, Say

    def quiet(at: float) -> Activity:
        return Activity(user_at=at, output_at=at, answered_at=None, busy=False)

    assert CallClock(CallControlOptions(), 0.0).next_due(5.0, quiet(0.0)) is None  # nothing to watch
    clock = CallClock(CallControlOptions(inactivity=InactivityConfig(10.0, 5.0), max_duration_s=60.0), 0.0)
    assert clock.step(1.0, quiet(1.0)) == []
    assert clock.next_due(1.0, quiet(1.0)) == 11.0  # the nudge: 10 s after the last activity
    busy = Activity(user_at=1.0, output_at=1.0, answered_at=None, busy=True)
    assert clock.step(4.0, busy) == []
    assert clock.next_due(4.0, busy) == 4.0 + STEP_S  # busy: the quiet counts from its end
    assert clock.step(6.0, quiet(1.0)) == []
    assert clock.next_due(6.0, quiet(1.0)) == 14.0  # from the last step that saw it busy
    assert clock.step(13.9, quiet(1.0)) == []
    assert [type(a) for a in clock.step(14.0, quiet(1.0))] == [Say]  # the nudge, when it said
    assert clock.next_due(14.0, quiet(1.0)) == 19.0  # the goodbye: end_after_s after the nudge
    late = CallClock(CallControlOptions(inactivity=InactivityConfig(100.0, 5.0), max_duration_s=60.0), 0.0)
    assert late.next_due(1.0, quiet(1.0)) == 60.0  # the time limit comes first
