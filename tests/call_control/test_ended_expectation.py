"""`agent-run test` with the `ended:` expectation, end to end: the real CLI as a subprocess, each
case through the real SDK over TLS to its own emulator, whose scenario calls end_call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.testing.expectations import EXPECTATIONS, Ended
from runner.testing.model import Where
from runner.testing.record import TurnRecord

REPO = Path(__file__).resolve().parents[2]
AGENT = """\
version: 1
name: desk
model: {id: amazon.nova-2-sonic-v1:0, region: us-east-1}
voice: matthew
system_prompt: You are a helpful assistant.
session:
  inactivity: {nudge_after_s: 1.5, end_after_s: 1.5, nudge: NUDGE, goodbye: GOODBYE}
tools:
  - name: end_call
    description: End the call after saying goodbye.
    input_schema: {type: object, properties: {}}
    handler: builtin:end_call
"""
TESTS = """\
version: 1
agent: desk.yaml
model:
  turns:
    - when: bye
      assistant:
        - say: "Goodbye!"
        - tool: end_call
    - when: NUDGE
      assistant: [{say: "Are you still there?"}]
    - when: GOODBYE
      assistant: [{say: "Hanging up now."}]
  fallback: [{say: "Hello."}]
cases:
  - name: the model hangs up
    turns:
      - user: hello
        expect: [{says: Hello}]
      - user: bye
        expect:
          - tool_called: end_call
          - ended: end_call
  - name: a silent caller is nudged then let go
    timeout_s: 30
    turns:
      - user: hello
      - expect: [{says: Hello}]  # a turn without input takes the answer still to come
      - expect: [{says: still there}]
      - expect:
          - says: Hanging up
          - ended: inactivity
"""
FAILING = """\
version: 1
agent: desk.yaml
model:
  turns:
    - when: bye
      assistant: [{say: "Goodbye!"}, {tool: end_call}]
  fallback: [{say: "Hello."}]
cases:
  - name: wrong reason
    turns:
      - user: bye
        expect: [{ended: max_duration}]
  - name: hung up too early
    turns:
      - user: bye
      - user: are you there
"""


def agent_run_test(folder: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "runner", "test", str(folder / name), "--parallel", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=150, check=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("agent_test")
    (tmp / "desk.yaml").write_text(AGENT, encoding="utf-8")
    (tmp / "desk.test.yaml").write_text(TESTS, encoding="utf-8")
    (tmp / "failing.test.yaml").write_text(FAILING, encoding="utf-8")
    return tmp


def test_cases_that_expect_the_call_to_end_pass(folder: Path) -> None:
    done = agent_run_test(folder, "desk.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASS") == 2, done.stdout


def test_a_wrong_reason_and_an_early_end_fail_with_their_reasons(folder: Path) -> None:
    done = agent_run_test(folder, "failing.test.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "expected the call to end (max_duration)" in out, out
    assert "but: it ended for another reason: end_call" in out, out
    assert "the call ended (end_call) before turn 2 of the case" in out, out


def test_the_expectation_is_registered_and_judges_a_turn_record() -> None:
    assert EXPECTATIONS["ended"] == Ended.parse
    expectation = Ended.parse("inactivity", Where("t.yaml", 3))
    assert expectation.check(TurnRecord(1, "> typed: hi", ended="inactivity")) is None
    assert expectation.check(TurnRecord(1, "> typed: hi")) == "the call did not end"
    assert expectation.check(TurnRecord(1, "> typed: hi", ended="transfer")) == \
        "it ended for another reason: transfer"
