"""`agent-run check` and `agent-run render` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
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
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


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
    assert lines[-1] == f"{len(names)} files checked: {errors} errors, 0 warnings"


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
        ("bad_voice.yaml", 7, 1, "error"), ("endpointing_v1.yaml", 7, 3, "error")]
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
