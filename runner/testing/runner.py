"""Cases in, outcomes out: runs each case (`repeat` times, with a required pass rate), checks every
expectation of every turn, and runs up to `parallel` cases at once in one event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from runner.config.model import AgentConfig
from runner.config.secrets import unset_refusal
from runner.testing.expectations import failure_message
from runner.testing.harness import CaseRun, Target, run_case
from runner.testing.model import Case


@dataclass(frozen=True, slots=True)
class RunSettings:
    target: Target = "emulator"
    repeat: int = 1
    pass_rate: float = 1.0  # the share of the `repeat` runs that must pass
    parallel: int = 1


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a case: the failures a user reads (empty: it passed)."""

    failures: tuple[str, ...]
    run: CaseRun

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    attempts: tuple[Attempt, ...]
    settings: RunSettings
    duration_s: float

    @property
    def passes(self) -> int:
        return sum(a.passed for a in self.attempts)

    @property
    def passed(self) -> bool:
        return self.passes >= required_passes(self.settings)

    def report(self) -> str:
        """Why the case failed, as the user reads it (empty when it passed)."""
        if self.passed:
            return ""
        failed = [a for a in self.attempts if not a.passed]
        head = ""
        if len(self.attempts) > 1:
            head = (f"passed {self.passes} of {len(self.attempts)} runs, "
                    f"{required_passes(self.settings)} required (pass rate {self.settings.pass_rate:g})\n"
                    "first failed run:\n")
        return head + "\n".join(failed[0].failures)


def required_passes(settings: RunSettings) -> int:
    needed = settings.repeat * settings.pass_rate
    whole = int(needed)
    return whole if whole >= needed - 1e-9 else whole + 1


def check_run(case: Case, run: CaseRun) -> tuple[str, ...]:
    """Every failure of one run: a run error, a turn that never finished, each failed expectation."""
    failures: list[str] = []
    if run.error is not None:
        failures.append(f"{case.where}: {case.name}: {run.error}")
    by_index = {record.index: record for record in run.turns}
    for index, turn in enumerate(case.turns, start=1):
        record = by_index.get(index)
        if record is None:
            continue  # the case stopped before this turn: reported as the error or the timeout above
        if record.problem is not None:
            lines = "\n".join(f"    {line}" for line in record.lines)
            failures.append(f"{turn.where}: turn {index}: {record.problem}\n  turn {index}:\n{lines}")
            if not record.sent:
                continue  # its input was never sent: its expectations say nothing more
        for expectation in turn.expectations:
            instead = expectation.check(record)
            if instead is not None:
                failures.append(failure_message(expectation, instead, record))
    return tuple(failures)


def env_refusal(jobs: Iterable[tuple[AgentConfig, Case]]) -> str | None:
    """Why these cases must not start (`${env:NAME}` variables they need are not set), or None:
    the refusal of `agent-run run`. A tool a case mocks is never called, so its variables are not
    needed for that case; an MCP server's always are (it starts whatever the mocks say)."""
    return unset_refusal(use for agent, case in jobs for use in agent.env_uses
                         if use.tool is None or use.tool not in case.mocks)


async def run_outcome(agent: AgentConfig, case: Case, settings: RunSettings) -> Outcome:
    started = time.monotonic()
    attempts: list[Attempt] = []
    for _ in range(settings.repeat):
        run = await run_case(agent, case, target=settings.target)
        attempts.append(Attempt(check_run(case, run), run))
        # Every run is made even once the verdict is known: "4 of 5" is what a user wants to see.
    return Outcome(case, tuple(attempts), settings, time.monotonic() - started)


async def run_cases(jobs: Sequence[tuple[AgentConfig, Case]], settings: RunSettings,
                    done: Callable[[Outcome], None] = lambda _: None) -> list[Outcome]:
    """Every case, up to `settings.parallel` at once; `done` is told of each as it finishes."""
    limit = asyncio.Semaphore(max(1, settings.parallel))
    outcomes: list[Outcome | None] = [None] * len(jobs)

    async def one(index: int, agent: AgentConfig, case: Case) -> None:
        async with limit:
            outcome = await run_outcome(agent, case, settings)
        outcomes[index] = outcome
        done(outcome)

    async with asyncio.TaskGroup() as tg:
        for index, (agent, case) in enumerate(jobs):
            tg.create_task(one(index, agent, case), name=f"case:{case.name}")
    return [o for o in outcomes if o is not None]
