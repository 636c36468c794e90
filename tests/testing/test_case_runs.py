"""Cases run in-process (the real conversation, SDK and TLS emulator): bounded waits, and the test
files as an editor validates them against the schema."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from runner.config.yaml import load
from runner.schemas import AGENT_TEST, SCENARIO, load_schema
from runner.testing.load import load_tests
from runner.testing.runner import RunSettings, run_outcome

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "agents").glob("*.test.yaml"))


def editor_validator() -> Draft202012Validator:
    """The test-file schema with its references to the scenario schema resolved, as editors do."""
    scenario = load_schema(SCENARIO)
    registry: Registry = Registry().with_resource(scenario["$id"], Resource.from_contents(scenario))
    schema = load_schema(AGENT_TEST)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_examples_validate_as_an_editor_would(path: Path) -> None:
    assert list(editor_validator().iter_errors(load(path.read_text()).data)) == []


def test_the_editor_sees_mistakes_inside_inline_scenarios() -> None:
    doc = {"version": 1, "agent": "a.yaml", "model": {"turns": [{"assistant": [{"sya": "hi"}]}]},
           "cases": [{"name": "x", "turns": [{"user": "hi"}]}]}
    assert list(editor_validator().iter_errors(doc))


def test_a_turn_that_gets_no_answer_times_out(tmp_path: Path) -> None:
    path = tmp_path / "t.test.yaml"
    path.write_text(f"""\
version: 1
agent: {REPO / 'agents' / 'orders.yaml'}
timeout_s: 1.5
model:
  turns:
    - assistant:  # a tool call and nothing said: no answer ever ends
        - tool: getDateAndTimeTool
cases:
  - name: silent
    turns:
      - user: What time is it?
        expect: [{{tool_called: getDateAndTimeTool}}]
      - user: Hello?
""")
    loaded = load_tests(path)
    started = time.monotonic()
    outcome = asyncio.run(run_outcome(loaded.agent, loaded.tests.cases[0], RunSettings()))
    assert time.monotonic() - started < 10
    assert not outcome.passed
    report = outcome.report()
    assert report.startswith(f"{path}:11: turn 1: timed out after 1.5 s waiting for the assistant's answer\n"
                             "  turn 1:\n    > typed: What time is it?\n"), report
    assert "expected a call of getDateAndTimeTool" not in report  # that one held
    assert "Hello?" not in report  # the second turn was never sent
