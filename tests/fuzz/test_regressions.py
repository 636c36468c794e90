"""Minimal reproducers of what the fuzzers found, through the real CLI.

A bug found in code someone else is changing may be added here marked `xfail(strict=True)`, with
an entry in known_bugs.py that the fuzz targets tolerate meanwhile: when the fix lands the test
passes, strict xfail fails the run, and the mark and the known_bugs.py entry go together."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.invariant import run_cli

AGENT = "version: 1\nname: fuzz\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: matthew\nsystem_prompt: Hi.\n"


def _located_error(result_text: str, path: Path) -> bool:
    return f"{path}:" in result_text and ": error: " in result_text


@pytest.mark.parametrize("command", ["check", "emulate"])
def test_a_nul_byte_in_a_yaml_file_is_a_located_error(tmp_path: Path, command: str) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(AGENT.encode().replace(b"fuzz", b"fu\x00zz"))
    args = ["check", path] if command == "check" else ["emulate", "--scenario", path, "--time-limit", "1"]
    result = run_cli(*args)
    assert result.code in (1, 2) and _located_error(result.stdout + result.stderr, path), result.describe()


@pytest.mark.parametrize("command", ["check", "emulate"])
def test_a_5000_digit_integer_in_a_yaml_file_is_a_located_error(tmp_path: Path, command: str) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(
        AGENT + "x: " + "9" * 5000 + "\n"
        if command == "check"
        else "settings: {speech_start_ms: " + "9" * 5000 + "}\n"
    )
    args = ["check", path] if command == "check" else ["emulate", "--scenario", path, "--time-limit", "1"]
    result = run_cli(*args)
    assert result.code in (1, 2) and _located_error(result.stdout + result.stderr, path), result.describe()


@pytest.mark.parametrize("command", ["check", "render"])
def test_a_var_value_that_is_not_utf8_is_refused(command: str) -> None:
    result = run_cli(command, "--var", "city=\udcff\udcfe", "agents/concierge.yaml")
    assert result.code in (1, 2) and "--var" in result.stdout + result.stderr, result.describe()


@pytest.mark.parametrize("body", ["[" * 5000, '{"event": {"sessionEnd": {"x": ' + "9" * 5000 + "}}}"])
@pytest.mark.parametrize("command", ["check", "render"])
def test_a_template_rendering_deep_or_huge_json_is_a_located_error(tmp_path: Path, body: str,
                                                                    command: str) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "sessionEnd.json.j2").write_text(body + "\n")
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT + "templates: templates\n")
    result = run_cli(command, agent)
    assert result.code in (1, 2) and "sessionEnd.json.j2" in result.stdout + result.stderr, result.describe()


@pytest.mark.parametrize("command", ["check", "render", "run"])
def test_an_agent_path_too_long_for_the_os_is_a_located_error(command: str) -> None:
    name = "9" * 5000
    result = run_cli(command, name)
    assert result.code in (1, 2) and "too long" in result.stdout + result.stderr, result.describe()
