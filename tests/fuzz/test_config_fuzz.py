"""Agent and scenario files generated from their JSON Schemas, then mutated: the loaders answer
with the config or located problems (never another exception), within the time and memory
budget; for a sample, the real CLI (`check`, `check --json`, `render`) exits 0, 1 or 2 without a
traceback."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.config import yaml
from runner.config.loader import check_agent, load_agent
from runner.config.schema import schema_problems
from runner.config.yaml import MAX_INT
from runner.emulator.scenario import check_scenario, load_scenario
from runner.errors import ConfigError
from runner.models import MODELS
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.invariant import (
    AGENT_CHECK_BUDGET_S,
    REPO,
    check_json_output,
    check_problems,
    outcome,
    run_cli,
)
from tests.fuzz.known_bugs import known_bug_in_output
from tests.fuzz.mutate import Raw, mutate_data, mutate_text, nested, to_yaml
from tests.fuzz.schema_strategy import SchemaStrategy

AGENT_SCHEMA = json.loads((REPO / "schemas" / "agent.schema.json").read_text())
SCENARIO_SCHEMA = json.loads((REPO / "schemas" / "scenario.schema.json").read_text())

_PROPERTY_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "object", "array"])
_INPUT_SCHEMA = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("object"),
            "properties": st.dictionaries(
                st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                st.fixed_dictionaries({"type": _PROPERTY_TYPES}),
                max_size=3,
            ),
        }
    ),
    st.sampled_from(
        [
            {"type": "object", "properties": {}, "required": []},
            {"$ref": "https://example.com/schema.json"},
            {"$ref": "file:///etc/passwd"},
            {"$ref": "#/definitions/missing"},
            {
                "type": "object",
                "$defs": {"a": {"$ref": "#/$defs/a"}},
                "properties": {"x": {"$ref": "#/$defs/a"}},
            },
            {"type": "object", "properties": {"x": {"type": "string", "pattern": "(unclosed"}}},
            {"type": "nonsense"},
        ]
    ),
)

AGENT_HINTS = {
    ("model", "id"): st.one_of(st.sampled_from(sorted(MODELS)), st.text(min_size=1, max_size=30)),
    ("tools", "*", "handler"): st.sampled_from(
        [
            "builtin:calculator",
            "builtin:current_datetime",
            "builtin:days_between",
            "builtin:nope",
            "orders_tools:track_order",
            "orders_tools:missing",
            "no_such_module_xyz:f",
            "json:dumps",
        ]
    ),
    ("tools", "*", "input_schema"): _INPUT_SCHEMA,
    ("system_prompt",): st.sampled_from(
        [
            "You are helpful.",
            "Hello {{ name }}",
            "{{ undefined_var }}",
            "{% if %}",
            "{{ 1/0 }}",
            "{{ 'x' * 100000000 }}",
            "{% for i in range(100000000) %}x{% endfor %}",
            "{{ ''.__class__ }}",
        ]
    ),
    ("system_prompt_file",): st.sampled_from(["prompt.txt", "missing.txt", "/dev/zero", "../x.txt", "."]),
    ("templates",): st.sampled_from(["templates", "missing_dir", ".", "prompt.txt", "/dev/null"]),
    ("greeting",): st.sampled_from(["Hi!", "{{ name }}", "{{ nope.attr }}"]),
}

SCENARIO_HINTS = {
    ("turns", "*", "assistant", "*", "say"): st.sampled_from(
        [
            "Sure.",
            "You said {{ user }}",
            "{{ tool_result.status }}",
            "{% if %}",
            "{{ 1/0 }}",
            "{{ 'x' * 100000000 }}",
            "{% for i in range(100000000) %}x{% endfor %}",
        ]
    ),
    ("turns", "*", "assistant", "*", "input"): st.sampled_from(
        [
            {},
            {"order_id": "123"},
            {"n": Raw("9" * 5000)},
            {"x": Raw(".nan")},
            {"order_id": "{{ match.order_id }}"},
            {"q": ["{{ user }}", {"deep": "{% if %}"}]},
            {"x": "{{ 'x' * 100000000 }}"},
        ]
    ),
    ("fallback", "*", "say"): st.sampled_from(["Sorry?", "You said {{ user }}", "{{ match.x }}", "{% if %}"]),
    ("turns", "*", "when"): st.sampled_from(
        [
            "order status",
            "?!",
            {"words": ["track my order", "status"]},
            {"words": ["..."]},
            {"regex": "order (?P<order_id>\\d+)"},
            {"regex": "(unclosed"},
            {"regex": "(?P<a>x)(?P<a>y)"},
            {"regex": "a{99999999999}"},
            {"words": ["cancel"], "regex": "(?P<order_id>\\d{3,})"},
        ]
    ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An agent folder with what generated files may name: a prompt file, a handler module and a
    template override folder."""
    base = tmp_path_factory.mktemp("fuzz-agent")
    (base / "prompt.txt").write_text("You are a fuzzed agent, {{ name }}.\n")
    shutil.copy(REPO / "agents" / "orders_tools.py", base / "orders_tools.py")
    (base / "templates").mkdir()
    (base / "templates" / "sessionEnd.json.j2").write_text('{"event": {"sessionEnd": {}}}\n')
    return base


def agent_documents() -> st.SearchStrategy[Any]:
    return SchemaStrategy(AGENT_SCHEMA, AGENT_HINTS).document()


def scenario_documents() -> st.SearchStrategy[Any]:
    return SchemaStrategy(SCENARIO_SCHEMA, SCENARIO_HINTS).document()


def _refused_character(c: str) -> bool:
    # Tab, newline and CR are refused in some fields (model.id, names) and not in others (prompts):
    # a document holding any control character is not counted as valid.
    return unicodedata.category(c) in ("Cc", "Cs")


def _scalars(value: Any) -> Iterator[Any]:
    """Every key and scalar of a document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from _scalars(item)
    else:
        yield value


def _refused_scalar(value: Any) -> bool:
    """A value the schema allows but the loader refuses (README "Limits"): a control character, an
    integer beyond 64 bits, a number with no finite JSON form, or a hint's verbatim hostile scalar."""
    if isinstance(value, Raw):
        return True
    if isinstance(value, str):
        return any(_refused_character(c) for c in value)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) > MAX_INT
    return isinstance(value, float) and not math.isfinite(value)


@st.composite
def file_bytes(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> tuple[bytes, bool]:
    """(the file's bytes, whether it is the unmutated schema-valid document)."""
    doc = draw(documents)
    kind = draw(st.sampled_from(["valid", "data", "data", "text", "both", "nested"]))
    if kind == "valid":
        # A schema-valid document may still hold a value the loader refuses: it is not counted as
        # valid, so only the loader's own answer (located problems) is checked.
        return to_yaml(doc).encode(), not any(_refused_scalar(v) for v in _scalars(doc))
    if kind == "nested":  # at the top, or inside a tool's input_schema (a JSON Schema hundreds deep)
        depth = draw(st.sampled_from([100, 300, 1000, 10_000]))
        deep = nested(depth, draw(st.sampled_from(["list", "map", "mixed"])))
        if doc.get("tools") and draw(st.booleans()):
            tool = doc["tools"][0]
            doc = {**doc, "tools": [{**tool, "input_schema": {"type": "object", "properties": {"x": deep}}}]}
            return to_yaml(doc).encode(), False
        return to_yaml({**doc, "x": deep}).encode(), False
    if kind in ("data", "both"):
        doc = draw(mutate_data(doc))
    text = to_yaml(doc)
    if kind in ("text", "both"):
        return draw(mutate_text(text)), False
    return text.encode("utf-8", "surrogatepass"), False


def _plain_load(raw: bytes) -> Any:
    return yaml.load(raw.decode("utf-8")).data


@fuzz_settings(40)
@given(generated=file_bytes(agent_documents()))
def test_generated_agent_files_load_or_get_located_problems(
    folder: Path, generated: tuple[bytes, bool]
) -> None:
    raw, valid = generated
    path = folder / "agent.yaml"
    path.write_bytes(raw)
    result = outcome(lambda: check_agent(path), seconds=AGENT_CHECK_BUDGET_S)
    if isinstance(result, BaseException):
        return  # a known open bug (known_bugs.py)
    config, problems = result
    check_problems(problems, valid=config is not None)
    if config is None:
        refused = outcome(lambda: load_agent(path), allowed=(ConfigError,), seconds=AGENT_CHECK_BUDGET_S)
        assert isinstance(refused, ConfigError)
    if valid:  # the generator's own check: a schema-valid document passes the schema stage
        assert schema_problems(_plain_load(raw)) == [], raw.decode()


@fuzz_settings(40)
@given(generated=file_bytes(scenario_documents()))
def test_generated_scenario_files_load_or_get_located_problems(
    folder: Path, generated: tuple[bytes, bool]
) -> None:
    raw, valid = generated
    path = folder / "scenario.yaml"
    path.write_bytes(raw)
    result = outcome(lambda: check_scenario(path))
    if isinstance(result, BaseException):
        return  # a known open bug (known_bugs.py)
    scenario, problems = result
    check_problems(problems, valid=scenario is not None)
    if scenario is None:
        assert isinstance(outcome(lambda: load_scenario(path), allowed=(ConfigError,)), ConfigError)
    if valid:  # the generator's own check
        assert list(Draft202012Validator(SCENARIO_SCHEMA).iter_errors(_plain_load(raw))) == [], raw.decode()


@fuzz_settings(4)
@given(generated=file_bytes(agent_documents()))
def test_generated_agent_files_through_the_real_cli(folder: Path, generated: tuple[bytes, bool]) -> None:
    raw, _ = generated
    path = folder / "cli-agent.yaml"
    path.write_bytes(raw)
    checked = run_cli("check", path, tolerate_known=True)
    as_json = run_cli("check", "--json", path, tolerate_known=True)
    rendered = run_cli("render", path, tolerate_known=True)
    if checked.known_bug or as_json.known_bug or rendered.known_bug:
        return  # a known open bug (known_bugs.py)
    assert as_json.code == checked.code, as_json.describe()
    listing = check_json_output(as_json)
    assert isinstance(listing, list)
    assert (as_json.code == 0) == (not any(p["severity"] == "error" for p in listing)), as_json.describe()
    if checked.code == 1:  # every error located: FILE:LINE:COL
        errors = [line for line in checked.stdout.splitlines() if ": error: " in line]
        assert errors and all(re.match(r"^.+:\d+:\d+: error: ", line) for line in errors), checked.describe()
    if checked.code == 0:
        assert rendered.code == 0, rendered.describe()
        for line in rendered.stdout.splitlines():
            if line.startswith("{"):
                json.loads(line)
    else:
        assert rendered.code != 0, rendered.describe()


@fuzz_settings(3)
@given(generated=file_bytes(scenario_documents()))
def test_generated_scenario_files_through_the_real_cli(folder: Path, generated: tuple[bytes, bool]) -> None:
    # `emulate --scenario FILE` serves until stopped: a refused file exits 1 or 2 on its own, an
    # accepted one gets to "listening" and stops cleanly on Ctrl-C.
    raw, _ = generated
    path = folder / "cli-scenario.yaml"
    path.write_bytes(raw)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    argv = [sys.executable, "-m", "runner", "emulate", "--scenario", str(path), "--port", "0"]
    proc = subprocess.Popen(argv, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        first = b""
        deadline = time.monotonic() + 30
        while proc.poll() is None and b"listening on" not in first and time.monotonic() < deadline:
            line = proc.stdout.readline()
            first += line
            if not line:
                break
        if b"listening on" in first:
            proc.send_signal(signal.SIGINT)
        out = first + proc.communicate(timeout=20)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = out.decode("utf-8", "replace")
    if proc.returncode == 3 and known_bug_in_output(text):
        return  # a known open bug (known_bugs.py)
    assert proc.returncode in (0, 1, 2), (proc.returncode, text[-3000:])
    assert "Traceback" not in text, text[-3000:]
    if proc.returncode != 0:
        assert f"{path}:" in text, text[-3000:]  # located: FILE:LINE:COL
