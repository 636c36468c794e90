"""`agent-run check` and `agent-run render` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.config.yaml import load as load_yaml
from runner.protocol.templates import validate_event

ROOT = Path(__file__).resolve().parent.parent
INVALID = ROOT / "tests" / "data" / "agents" / "invalid"
INVALID_CASES = sorted(INVALID.glob("*.yaml"))


def agent_run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: with another cwd, `-m runner` must still import this checkout, not an installed copy.
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False, env=env)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_check_passes_on_the_examples() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "agents").glob("*.yaml"))
    result = agent_run("check", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{len(files)} files checked: 0 errors, 0 warnings\n"


def test_check_reports_every_expected_problem_of_the_invalid_corpus() -> None:
    names = [p.name for p in INVALID_CASES]
    result = agent_run("check", *names, cwd=INVALID)
    no_traceback(result)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    for case in INVALID_CASES:
        for want in case.with_suffix(".expected").read_text(encoding="utf-8").splitlines():
            want = f"{case.name}:{want}" if want[:1].isdigit() else want
            assert any(line.startswith(want) for line in lines), f"{want!r} not in output"
    errors = sum(": error: " in line for line in lines)
    # The one warning: endpointing_v1.yaml is about v1 behaviour, and v1 is past its end of life.
    (warning,) = [line for line in lines if ": warning: " in line]
    assert warning.startswith("endpointing_v1.yaml:5:3: warning: amazon.nova-sonic-v1:0 (Nova Sonic) reached "
                              "end of life on 2026-09-14")
    assert lines[-1] == f"{len(names)} files checked: {errors} errors, 1 warning"


@pytest.mark.parametrize("case", INVALID_CASES, ids=[c.stem for c in INVALID_CASES])
def test_each_invalid_file_exits_1(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(case)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("1 file checked: ") and ": error: " in out


def test_check_json_is_machine_readable() -> None:
    result = agent_run("check", "--json", "bad_voice.yaml", "endpointing_v1.yaml", cwd=INVALID)
    assert result.returncode == 1
    problems = json.loads(result.stdout)
    assert [(p["file"], p["line"], p["col"], p["severity"]) for p in problems] == [
        ("bad_voice.yaml", 7, 1, "error"), ("endpointing_v1.yaml", 5, 3, "warning"),
        ("endpointing_v1.yaml", 7, 3, "error")]
    assert json.loads(agent_run("check", "--json", "agents/simple.yaml").stdout) == []


def test_user_mistakes_never_give_a_traceback(tmp_path: Path) -> None:
    result = agent_run("check", str(tmp_path / "missing.yaml"), str(tmp_path))
    no_traceback(result)
    assert result.returncode == 1
    assert f"{tmp_path}/missing.yaml:1:1: error: no such file" in result.stdout
    result = agent_run("check", "agents/orders.yaml", "--var", "novalue")
    no_traceback(result)
    assert result.returncode == 2 and "expected NAME=VALUE" in result.stderr
    result = agent_run("render", "agents/concierge.yaml", "--var", "ciyt=Oslo")
    no_traceback(result)
    assert result.returncode == 1
    assert "--var ciyt: no such variable in vars; did you mean 'city'?" in result.stderr
    result = agent_run("render", "tests/data/agents/invalid/wrong_types.yaml")
    no_traceback(result)
    assert result.returncode == 1 and "4 error(s)" in result.stderr and result.stdout == ""


def test_each_missing_key_is_reported_once_plus_the_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "foo.yaml"
    path.write_text("foo: 1\n", encoding="utf-8")
    result = agent_run("check", str(path))
    no_traceback(result)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:1:1: error: missing required key 'model'",
        f"{path}:1:1: error: missing required key 'name'",
        f"{path}:1:1: error: missing required key 'version'",
        f"{path}:1:1: error: missing required key 'voice'",
        f"{path}:1:1: error: missing the system prompt: add system_prompt (or system_prompt_file)",
        f"{path}:1:1: error: unknown key 'foo' (allowed: allow_files_outside_agent_folder, audio, "
        "description, greeting, inference, mcp_servers, model, "
        "name, policy, session, system_prompt, system_prompt_file, templates, tools, turn_detection, vars, "
        "version, voice)",
        "1 file checked: 6 errors, 0 warnings"]
    # Nested required keys too: one line for the tool's one missing key.
    path.write_text('version: 1\nname: n\nmodel: {}\nvoice: matthew\nsystem_prompt: Hi.\n', encoding="utf-8")
    lines = agent_run("check", str(path)).stdout.splitlines()
    assert lines == [f"{path}:3:1: error: missing required key 'id' in model",
                     "1 file checked: 1 error, 0 warnings"]


@pytest.mark.parametrize(("value", "message"), [
    ('"1"', "version: must be the number 1, not a string ('1'): write `version: 1` without quotes"),
    ("one", "version: must be the number 1, not a string ('one'): write `version: 1`"),
    ("2", "version: unsupported format version 2 (this runner reads version 1)"),
])
def test_version_must_be_the_number_1(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(f"version: {value}\nname: n\nmodel: {{id: amazon.nova-2-sonic-v1:0}}\nvoice: matthew\n"
                    "system_prompt: Hi.\n", encoding="utf-8")
    result = agent_run("check", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{path}:1:1: error: {message}",
                                          "1 file checked: 1 error, 0 warnings"]


# Field order as in the reference events (nova-sonic-protocol.md §2.1–2.3 and the AWS samples).
EXPECTED_KEYS = [
    ("sessionStart", ["inferenceConfiguration"]),
    ("promptStart", ["promptName", "textOutputConfiguration", "audioOutputConfiguration",
                     "toolUseOutputConfiguration", "toolConfiguration"]),
    ("contentStart", ["promptName", "contentName", "type", "interactive", "role", "textInputConfiguration"]),
    ("textInput", ["promptName", "contentName", "content"]),
    ("contentEnd", ["promptName", "contentName"]),
    ("contentStart", ["promptName", "contentName", "type", "interactive", "role", "audioInputConfiguration"]),
]


def render(*args: str) -> list[dict[str, Any]]:
    result = agent_run("render", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_render_orders_prints_the_opening_events() -> None:
    events = render("agents/orders.yaml")
    shape = [(name, list(body)) for event in events for name, body in event["event"].items()]
    assert shape == EXPECTED_KEYS
    for event in events:
        (name,) = event["event"]
        assert validate_event(name, event) == []
    bodies = [next(iter(e["event"].values())) for e in events]
    assert bodies[1]["audioOutputConfiguration"]["voiceId"] == "matthew"
    assert (bodies[2]["type"], bodies[2]["role"], bodies[2]["interactive"]) == ("TEXT", "SYSTEM", False)
    assert (bodies[5]["type"], bodies[5]["role"], bodies[5]["interactive"]) == ("AUDIO", "USER", True)
    assert bodies[5]["audioInputConfiguration"]["sampleRateHertz"] == 16000
    assert len({b["promptName"] for b in bodies[1:]}) == 1
    specs = [t["toolSpec"] for t in bodies[1]["toolConfiguration"]["tools"]]
    declared = load_yaml((ROOT / "agents" / "orders.yaml").read_text(encoding="utf-8")).data["tools"]
    assert [s["name"] for s in specs] == ["getDateAndTimeTool", "trackOrderTool"]
    for spec, tool in zip(specs, declared, strict=True):
        assert isinstance(spec["inputSchema"]["json"], str)  # Nova wants the schema as JSON *text*
        assert json.loads(spec["inputSchema"]["json"]) == tool["input_schema"]
    assert bodies[3]["content"].startswith("You are a friendly assistant.")


def test_render_is_reproducible_and_takes_vars() -> None:
    first = agent_run("render", "agents/concierge.yaml", "--var", "city=Reykjavík")
    second = agent_run("render", "agents/concierge.yaml", "--var", "city=Reykjavík")
    assert first.returncode == 0 and first.stdout == second.stdout
    events = [json.loads(line) for line in first.stdout.splitlines()]
    start = events[0]["event"]["sessionStart"]
    assert start["turnDetectionConfiguration"] == {"endpointingSensitivity": "MEDIUM"}
    assert "in Reykjavík" in events[3]["event"]["textInput"]["content"]
    # Nova 2 speaks first: an interactive USER text block follows the audio contentStart.
    names = [next(iter(e["event"])) for e in events]
    assert names[5:] == ["contentStart", "contentStart", "textInput", "contentEnd"]
    assert events[6]["event"]["contentStart"]["role"] == "USER"
    assert events[6]["event"]["contentStart"]["interactive"] is True
