"""`agent-run test` and `pytest` on test files, end to end: the real CLI as a subprocess, each case
through the real SDK over TLS to its own in-process emulator."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "testing"
EXAMPLE_CASES = 11  # agents/*.test.yaml
# Test files that fail on purpose, written as *.test.yaml outside the repository (see data_files).
FOLDER = Path(tempfile.mkdtemp(prefix="agent-run-tests-"))
FAILING = FOLDER / "failing.test.yaml"
BROKEN = FOLDER / "broken.test.yaml"


@pytest.fixture(scope="module", autouse=True)
def data_files() -> Iterator[None]:
    """tests/data/testing/NAME.yaml as FOLDER/NAME.test.yaml naming the real orders agent."""
    for path in (FAILING, BROKEN):
        source = (DATA / path.name.replace(".test.yaml", ".yaml")).read_text(encoding="utf-8")
        path.write_text(source.replace("agent: AGENT", f"agent: {REPO / 'agents' / 'orders.yaml'}"),
                        encoding="utf-8")
    yield
    shutil.rmtree(FOLDER, ignore_errors=True)


def env() -> dict[str, str]:
    """This environment minus anything AWS, so no run can reach a real account by accident."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean.pop("SSL_CERT_FILE", None)
    clean["PYTHONUNBUFFERED"] = "1"
    # This checkout first (the installed package may be another checkout's editable install).
    clean["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return clean


def run(*args: str | Path, module: str = "runner", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_the_examples_pass_offline_in_under_a_minute() -> None:
    started = time.monotonic()
    done = run("test", "agents/", "--parallel", "4")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(lines) == EXAMPLE_CASES, done.stdout
    assert all(line.startswith("PASS  agents/") for line in lines), done.stdout
    assert f"{EXAMPLE_CASES} cases: {EXAMPLE_CASES} passed, 0 failed" in done.stdout
    assert elapsed < 60
    # Cases ran side by side: the whole run took less than its cases one after another.
    durations = [float(m) for m in re.findall(r"\((\d+\.\d) s\)", "\n".join(lines))]
    assert elapsed < sum(durations), done.stdout


def test_a_failing_expectation_shows_where_what_and_the_turn() -> None:
    done = run("test", FAILING)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    shown = FAILING  # as given on the command line
    assert f"PASS  {shown}: passes (" in done.stdout
    assert f"FAIL  {shown}: expects the wrong status (" in done.stdout
    assert (f"--- FAIL expects the wrong status\n"
            f"{shown}:25: expected the assistant's words: contains 'cancelled'\n"
            "  but: no 'cancelled' in what the assistant said: "
            "'Let me check that order for you. Your order 12345 is shipped.'\n"
            "  turn 1:\n"
            "    > typed: Where is my order 12345?\n"
            "    heard: Where is my order 12345?\n"
            "    assistant: Let me check that order for you.\n"
            '    tool call: trackOrderTool {"orderId": "12345"}\n'
            '    tool result: trackOrderTool {"orderNumber": "12345", "orderStatus": "Shipped"} ('
            ) in done.stdout
    assert "    assistant: Your order 12345 is shipped.\n" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("2 cases: 1 passed, 1 failed (")


def test_repeat_and_pass_rate() -> None:
    done = run("test", FAILING, "-k", "WRONG status", "--repeat", "2", "--pass-rate", "0.5")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0/2 runs passed" in done.stdout
    assert "passed 0 of 2 runs, 1 required (pass rate 0.5)\nfirst failed run:\n" in done.stdout
    done = run("test", FAILING, "-k", "passes", "--repeat", "2", "--pass-rate", "0.5")
    assert done.returncode == 0 and "2/2 runs passed" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    ([str(BROKEN)],
     f"{BROKEN}:8:13: error: unknown key 'sayz' in cases[0].turns[0].expect[0]; "
     "did you mean 'says'?\nagent-run test: 1 error in the test files or their agents; nothing was run\n"),
    (["tests/data/testing/none.test.yaml"],
     "agent-run test: tests/data/testing/none.test.yaml: no such file or folder\n"),
    ([str(FAILING), "-k", "nothing like it"], "agent-run test: no case matches -k 'nothing like it'\n"),
])
def test_bad_files_exit_2_without_a_traceback(args: list[str], expected: str) -> None:
    done = run("test", *args)
    assert (done.returncode, done.stdout, done.stderr) == (2, expected, "")


@pytest.mark.parametrize("bad", [["--repeat", "0"], ["--pass-rate", "1.5"], ["--parallel", "x"],
                                 ["--target", "cloud"]])
def test_bad_options_are_usage_errors(bad: list[str]) -> None:
    done = run("test", FAILING, *bad)
    assert done.returncode == 2 and "usage: agent-run test" in done.stderr and "Traceback" not in done.stderr


def test_pytest_collects_the_same_cases() -> None:
    done = run("agents/", "--collect-only", "-q", "-p", "no:cacheprovider", module="pytest")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(ids) == EXAMPLE_CASES
    assert "agents/orders.test.yaml::tracks an order" in ids
    assert "agents/concierge.test.yaml::greets, counts nights and works out a tip" in ids


def test_pytest_runs_a_file_with_k_and_junitxml(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    # Outside the repository its conftest.py does not load the plugin: the entry point does, once
    # installed (`pip install -e .`), and `-p` in any case (registered once either way).
    done = run(FAILING, "-p", "runner.testing.plugin", "-p", "no:cacheprovider", f"--junitxml={report}",
               "-k", "wrong", module="pytest")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 deselected" in done.stdout
    assert f"{FAILING}:25: expected the assistant's words: contains 'cancelled'" in done.stdout
    assert "Traceback" not in done.stdout
    xml = report.read_text()
    assert 'name="expects the wrong status"' in xml and "<failure" in xml


def test_pytest_reports_a_broken_file_as_a_collection_error() -> None:
    done = run(BROKEN, "-p", "runner.testing.plugin", "-p", "no:cacheprovider", module="pytest")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "broken.test.yaml:8:13: error: unknown key 'sayz'" in done.stdout
    assert "Traceback" not in done.stdout


def test_pytest_xdist_runs_the_cases_in_workers() -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (the dev extra installs it)")
    done = run("agents/", "-n", "2", "-p", "no:cacheprovider", "-q", module="pytest", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{EXAMPLE_CASES} passed" in done.stdout


def test_check_checks_test_files_too() -> None:
    done = run("check", "agents/orders.yaml", "agents/orders.test.yaml", BROKEN)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == (f"{BROKEN}:8:13: error: unknown key 'sayz' in "
                           "cases[0].turns[0].expect[0]; did you mean 'says'?\n"
                           "3 files checked: 1 error, 0 warnings\n")


def test_target_bedrock_without_credentials_fails_each_case_with_the_reason(tmp_path: Path) -> None:
    clean = env()
    clean["HOME"] = str(tmp_path)  # no ~/.aws either
    done = subprocess.run([sys.executable, "-m", "runner", "test", "agents/simple.test.yaml",
                           "--target", "bedrock"],
                          cwd=REPO, env=clean, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    # Cases that check the emulator's scripted words say where they run, and are skipped here.
    assert "SKIP  agents/simple.test.yaml: answers typed text (targets: emulator)\n" in done.stdout
    assert ("agents/simple.test.yaml:24: cannot be interrupted (half duplex): no AWS credentials found"
            in done.stdout)
    assert done.stdout.rstrip().splitlines()[-1].startswith("3 cases: 0 passed, 1 failed, 2 skipped (")
    assert "Traceback" not in done.stdout + done.stderr


def test_pytest_skips_a_case_meant_for_another_target() -> None:
    done = run("agents/simple.test.yaml", "--agent-target", "bedrock", "-k", "typed", "-rs",
               "-p", "no:cacheprovider", module="pytest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "this case runs on: emulator (not bedrock)" in done.stdout and "1 skipped" in done.stdout
