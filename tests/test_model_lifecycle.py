"""Model lifecycle as a user meets it: `check`, `render` and a run, each a real subprocess.

Nova Sonic v1 reached end of life on 2026-09-14; the examples use Nova 2 Sonic, and an agent that
still names v1 (directly or through a cross-region profile id) gets a warning with the date and the
replacement id wherever it is used, without changing any exit status.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from runner.models import (
    MODELS,
    NOVA_2_SONIC,
    NOVA_SONIC_V1,
    Lifecycle,
    describe_lifecycle,
    lifecycle_warning,
    model_info,
)
from runner.schemas import AGENT, load_schema

ROOT = Path(__file__).resolve().parent.parent
# Agent files (the *.test.yaml beside them are test files: tests/testing).
EXAMPLES = sorted(p for p in (ROOT / "agents").glob("*.yaml") if not p.name.endswith(".test.yaml"))
RETIRED = ("warning: amazon.nova-sonic-v1:0 (Nova Sonic) reached end of life on 2026-09-14: Bedrock no "
           "longer serves it; use amazon.nova-2-sonic-v1:0 instead")

V1_AGENT = """\
version: 1
name: old
model:
  id: {model}
  region: us-east-1
voice: matthew
system_prompt: You are brief.
"""


def agent_run(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("SSL_CERT_FILE", None)
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


def write(folder: Path, model: str) -> Path:
    path = folder / "old.yaml"
    path.write_text(V1_AGENT.format(model=model), encoding="utf-8")
    return path


def test_every_example_uses_nova_2_and_one_of_its_voices() -> None:
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        assert "id: amazon.nova-2-sonic-v1:0" in text, path.name
        voice = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("voice:"))
        assert voice in NOVA_2_SONIC.voices, (path.name, voice)
    # ... and using them is silent: no warning on stderr from render, none from check.
    for path in EXAMPLES:
        result = agent_run("render", str(path.relative_to(ROOT)))
        assert result.returncode == 0 and result.stderr == "", result.stderr
    checked = agent_run("check", *(str(p.relative_to(ROOT)) for p in EXAMPLES))
    assert checked.stdout.endswith(" checked: 0 errors, 0 warnings\n"), checked.stdout


def test_readme_and_schema_name_nova_2_not_v1_as_the_model_to_use() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "model: {id: amazon.nova-2-sonic-v1:0" in readme
    assert "amazon.nova-sonic-v1:0" in readme and "end of life on 2026-09-14" in readme
    model_id = load_schema(AGENT)["properties"]["model"]["properties"]["id"]
    assert model_id["examples"][0] == NOVA_2_SONIC.id
    assert NOVA_SONIC_V1.id not in model_id["examples"]
    voice = load_schema(AGENT)["properties"]["voice"]["description"]
    assert ", ".join(NOVA_2_SONIC.voices) in voice


def test_check_warns_at_model_id_with_date_and_replacement_and_still_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, "amazon.nova-sonic-v1:0")
    result = agent_run("check", str(path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [f"{path}:4:3: {RETIRED}", "1 file checked: 0 errors, 1 warning"]
    (problem,) = json.loads(agent_run("check", "--json", str(path)).stdout)
    assert (problem["line"], problem["col"], problem["severity"]) == (4, 3, "warning")


@pytest.mark.parametrize("prefix", ["us.", "global.", "eu.", "apac."])
def test_a_profile_id_of_the_retired_model_warns_too(tmp_path: Path, prefix: str) -> None:
    path = write(tmp_path, f"{prefix}amazon.nova-sonic-v1:0")
    result = agent_run("check", str(path))
    assert result.returncode == 0
    assert f"{path}:4:3: warning: {prefix}amazon.nova-sonic-v1:0 (Nova Sonic) reached end of life on " \
           "2026-09-14" in result.stdout


def test_profile_ids_and_unknown_newer_models_keep_working(tmp_path: Path) -> None:
    for model in ("us.amazon.nova-2-sonic-v1:0", "global.amazon.nova-2-sonic-v1:0"):
        result = agent_run("check", str(write(tmp_path, model)))
        assert result.returncode == 0
        assert result.stdout.splitlines() == ["1 file checked: 0 errors, 0 warnings"]
    path = write(tmp_path, "amazon.nova-2-5-sonic")
    result = agent_run("check", str(path))
    assert result.returncode == 0
    assert f"{path}:4:3: warning: unknown model id 'amazon.nova-2-5-sonic'" in result.stdout
    assert "assuming a newer model with Nova 2 capabilities" in result.stdout


def test_render_shows_the_warning_on_stderr_and_keeps_stdout_json(tmp_path: Path) -> None:
    path = write(tmp_path, "amazon.nova-sonic-v1:0")
    result = agent_run("render", str(path))
    assert result.returncode == 0
    assert result.stderr == f"{path}:4:3: {RETIRED}\n"
    assert all(json.loads(line)["event"] for line in result.stdout.splitlines())


def test_a_run_shows_the_warning_on_the_console(tmp_path: Path) -> None:
    path = write(tmp_path, "amazon.nova-sonic-v1:0")
    result = agent_run(str(path), "--emulate", "--input", str(ROOT / "samples" / "thanks_bye.wav"),
                       "--output", str(tmp_path / "out.wav"), "--max-duration", "1")
    assert "Traceback" not in result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert RETIRED in lines, result.stdout + result.stderr
    # Shown before the conversation starts, so a user sees it even when Bedrock then refuses.
    assert lines.index(RETIRED) < next(i for i, ln in enumerate(lines) if "via https://" in ln)


# --- the registry itself ----------------------------------------------------------------------------

def test_every_model_records_its_status_and_v1_is_retired_with_a_replacement() -> None:
    assert NOVA_2_SONIC.status is Lifecycle.ACTIVE and NOVA_2_SONIC.end_of_life is None
    assert NOVA_SONIC_V1.status is Lifecycle.END_OF_LIFE
    assert (NOVA_SONIC_V1.end_of_life, NOVA_SONIC_V1.replacement) == (date(2026, 9, 14), NOVA_2_SONIC.id)
    for info in MODELS.values():
        assert info.replacement is None or info.replacement in MODELS
    assert "greta" in NOVA_SONIC_V1.voices and "greta" not in NOVA_2_SONIC.voices


def test_a_legacy_model_warns_before_its_date_and_is_retired_after() -> None:
    assert lifecycle_warning(NOVA_2_SONIC.id) is None and lifecycle_warning("amazon.nova-2-5-sonic") is None
    legacy = dataclasses.replace(NOVA_SONIC_V1, status=Lifecycle.LEGACY)
    before = describe_lifecycle(legacy, legacy.id, date(2026, 9, 13))
    assert before == ("amazon.nova-sonic-v1:0 (Nova Sonic) is a legacy model, served only until "
                      "2026-09-14; use amazon.nova-2-sonic-v1:0 instead")
    assert legacy.status_on(date(2026, 9, 14)) is Lifecycle.END_OF_LIFE
    after = describe_lifecycle(legacy, "us." + legacy.id, date(2026, 9, 14))
    assert after == f"us.{RETIRED.removeprefix('warning: ')}"
    assert lifecycle_warning(NOVA_SONIC_V1.id, today=date(2026, 1, 1)) == RETIRED.removeprefix("warning: ")


@pytest.mark.parametrize(("model_id", "expected"), [
    ("amazon.nova-2-sonic-v1:0", NOVA_2_SONIC),
    ("us.amazon.nova-2-sonic-v1:0", NOVA_2_SONIC),
    ("global.amazon.nova-2-sonic-v1:0", NOVA_2_SONIC),
    ("eu.amazon.nova-sonic-v1:0", NOVA_SONIC_V1),
    ("apac.amazon.nova-sonic-v1:0", NOVA_SONIC_V1),
    ("us-gov.amazon.nova-2-sonic-v1:0", NOVA_2_SONIC),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-2-sonic-v1:0", NOVA_2_SONIC),
    ("amazon.nova-2-5-sonic", None),
    ("us.amazon.nova-2-5-sonic", None),
    ("amazon.nova-sonic-v1:0x", None),
])
def test_profile_ids_resolve_to_their_model(model_id: str, expected: object) -> None:
    assert model_info(model_id) is expected
