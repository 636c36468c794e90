"""`agent-run run` refuses meaningless numbers and options that would be silently ignored (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "agents" / "orders.yaml"


def agent_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", str(AGENT), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--max-duration", "-1", "'-1': expected more than 0 seconds"),
    ("--max-duration", "0", "'0': expected more than 0 seconds"),
    ("--max-duration", "nan", "'nan': expected a finite number of seconds"),
    ("--max-duration", "inf", "'inf': expected a finite number of seconds"),
    ("--max-duration", "soon", "'soon' is not a number of seconds"),
    ("--idle-exit", "-0.5", "'-0.5': expected 0 or more seconds"),
    ("--idle-exit", "NaN", "'NaN': expected a finite number of seconds"),
    ("--time-limit", "-3", "'-3': expected more than 0 seconds"),
    ("--time-limit", "0", "'0': expected more than 0 seconds"),
    ("--time-limit", "1e999", "'1e999': expected a finite number of seconds"),
])
def test_bad_durations_are_refused(option: str, value: str, message: str) -> None:
    done = agent_run("--emulate", option, value)
    assert done.returncode == 2, done
    assert f"argument {option}: {message}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_time_limit_without_emulate_is_an_error() -> None:
    done = agent_run("--time-limit", "30")
    assert done.returncode == 2, done
    assert "--time-limit only applies with --emulate" in done.stderr, done.stderr
