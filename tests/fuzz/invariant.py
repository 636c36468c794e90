"""The invariant every fuzz target checks: a result or the documented error, within budgets.

`within_budget` runs a call in-process under a wall-clock budget (SIGALRM, so a hang fails the
example instead of the whole run) and a memory budget (RLIMIT_AS lowered to the current size plus the budget).
`run_cli` runs the real CLI in a child with an address-space limit (RLIMIT_AS) and a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.report import Problem

REPO = Path(__file__).resolve().parents[2]
TIME_BUDGET_S = 5.0  # per in-process example: refusing 1,000 nested lists takes ~0.6 s on an idle
# core, and CI machines are shared and noisy; a hang still fails within seconds
# An agent check imports each local handler module in a child first (up to 5 s each, see README
# "Limits"): on a busy machine a few tools take longer than TIME_BUDGET_S without hanging.
AGENT_CHECK_BUDGET_S = 20.0
MEMORY_BUDGET = 512 * 1024 * 1024  # address-space growth allowed per in-process example
CLI_TIMEOUT_S = 30.0
CLI_ADDRESS_SPACE = 2 * 1024**3  # RLIMIT_AS of a CLI child: a runaway allocation fails, not swaps



class BudgetExceeded(BaseException):
    """An example ran past its time budget."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise BudgetExceeded(f"over the {seconds} s budget")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _address_space(extra: int) -> Iterator[None]:
    """Lower this process's RLIMIT_AS soft limit to its current size plus `extra` bytes, so a
    runaway allocation is a MemoryError; the previous limit is restored (the hard limit is never
    touched, so the soft one can always be raised back). tracemalloc would do the same job at a
    10-20x slowdown of the YAML parser, turning the time budget into noise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    limit = pages * resource.getpagesize() + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def within_budget[T](call: Callable[[], T], *, seconds: float = TIME_BUDGET_S,
                     memory: int = MEMORY_BUDGET) -> T:
    """`call()`, failing the example if it takes longer than `seconds` or tries to grow the
    address space by more than `memory` bytes (a MemoryError: not a documented error, so the
    caller's check fails). Whatever `call` raises propagates: the caller decides what is allowed."""
    try:
        with _address_space(memory), _alarm(seconds):
            return call()
    except BudgetExceeded as exc:  # a plain failure, so hypothesis shrinks and reports it
        raise AssertionError(f"{exc} (a hang or a quadratic step)") from None


def check_problems(problems: Any, *, valid: bool) -> None:
    """A loader's answer: a list of located Problems; an invalid result has at least one error."""
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, Problem), problem
        assert problem.line >= 1 and problem.col >= 1, problem
        assert problem.severity in ("error", "warning"), problem
        assert isinstance(problem.message, str) and problem.message, problem
        problem.format()
    if not valid:
        assert any(p.is_error for p in problems), f"refused without an error: {problems}"


@dataclass
class CliResult:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    known_bug: bool = False

    def describe(self) -> str:
        return (
            f"agent-run {' '.join(self.args)} -> {self.code}\nstdout:\n{self.stdout[-3000:]}\n"
            f"stderr:\n{self.stderr[-3000:]}"
        )


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CLI_ADDRESS_SPACE, CLI_ADDRESS_SPACE))


def run_cli(
    *args: str | Path, cwd: Path = REPO, timeout: float = CLI_TIMEOUT_S, tolerate_known: bool = False
) -> CliResult:
    """`python -m runner ARGS` from the repo root, bounded in time and address space; checks the
    CLI invariant: exit 0, 1 or 2, never a traceback. With `tolerate_known` (fuzz samples), the
    traceback of a known open bug (known_bugs.py) is accepted: the result has `known_bug` set."""
    from tests.fuzz.known_bugs import known_bug_in_output

    argv = [str(a) for a in args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        preexec_fn=_limit_memory,
        check=False,
    )
    result = CliResult(
        argv, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )
    if tolerate_known and result.code == 3 and known_bug_in_output(result.stdout + result.stderr):
        result.known_bug = True
        return result
    assert result.code in (0, 1, 2), result.describe()
    assert "Traceback" not in result.stdout + result.stderr, result.describe()
    return result


def check_json_output(result: CliResult) -> Any:
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise AssertionError(f"--json printed no JSON ({exc}):\n{result.describe()}") from None


def outcome[T](
    call: Callable[[], T],
    *,
    allowed: tuple[type[BaseException], ...] = (),
    seconds: float = TIME_BUDGET_S,
    memory: int = MEMORY_BUDGET,
) -> T | BaseException:
    """`call()` within budget; the result, or an exception of an `allowed` type, or (returned,
    not raised) an exception matching a known open bug of another owner (tests/fuzz/known_bugs.py,
    each with its own strict-xfail regression test). Anything else fails the example."""
    from tests.fuzz.known_bugs import known_bug

    try:
        return within_budget(call, seconds=seconds, memory=memory)
    except allowed as exc:
        return exc
    except Exception as exc:
        if known_bug(exc) is not None:
            return exc
        raise
