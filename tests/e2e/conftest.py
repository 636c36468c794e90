"""Fixtures of the end-to-end tests (helpers live in e2e_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e_helpers import Run


@pytest.fixture
def start_run() -> Iterator[Callable[..., Run]]:
    """`start_run(args, transcript=..., env=...)` starts `agent-run ARGS` in the background; runs
    still alive at teardown are killed, so a failed test leaks no process."""
    started: list[Run] = []

    def start(*args: Any, **kwargs: Any) -> Run:
        run = Run(*args, **kwargs)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()
