"""Maps exceptions to exit codes: the one place that decides what a user sees when things fail.

RunnerError -> its message on stderr, exit 1 (a user mistake or a service error: no traceback).
A stop signal outside the conversation (runner.signals.Interrupted) -> 128 + its number (SIGINT
130, SIGTERM 143, SIGHUP 129); a plain KeyboardInterrupt -> 130.  Anything else is a bug:
traceback, exit 3.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runner.errors import RunnerError
from runner.signals import Interrupted, exit_code


@dataclass
class Outcome:
    code: int = 0


@contextmanager
def error_handler() -> Iterator[Outcome]:
    outcome = Outcome()
    try:
        yield outcome
    except RunnerError as exc:
        print(f"agent-run: error: {exc}", file=sys.stderr)
        outcome.code = 1
    except KeyboardInterrupt as exc:
        outcome.code = interrupted_code(exc)
    except Exception:
        traceback.print_exc()
        print("agent-run: an unexpected error occurred (this is a bug; please report it)",
              file=sys.stderr)
        outcome.code = 3


def interrupted_code(exc: KeyboardInterrupt) -> int:
    """Say that the run was interrupted (by which signal) and return the exit code."""
    if isinstance(exc, Interrupted):
        print(f"agent-run: interrupted ({exc})", file=sys.stderr)
        return exc.code
    print("agent-run: interrupted", file=sys.stderr)
    return exit_code(2)
