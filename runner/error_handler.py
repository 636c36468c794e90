"""Maps exceptions to exit codes: the one place that decides what a user sees when things fail.

RunnerError -> its message on stderr, exit 1 (a user mistake or a service error: no traceback).
KeyboardInterrupt -> exit 130.  Anything else is a bug: traceback, exit 3.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runner.errors import RunnerError


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
    except KeyboardInterrupt:
        print("agent-run: interrupted", file=sys.stderr)
        outcome.code = 130
    except Exception:
        traceback.print_exc()
        print("agent-run: an unexpected error occurred (this is a bug; please report it)",
              file=sys.stderr)
        outcome.code = 3
