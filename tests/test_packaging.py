"""The wheel carries the schemas and templates, and the schema's enums come from the registries."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from runner.audio import SINKS, SOURCES
from runner.policies import POLICIES
from runner.schemas import AGENT, load_schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("nova_agent_runner-*.whl")
    return found


def test_installed_schemas_equal_the_source_files(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # Ask the installed package itself where its schemas are, and that its templates work.
    probe = ("import json, runner.schemas as s; from runner.config.templates import load_event_templates;"
             "assert not load_event_templates().check();"
             "print(json.dumps([str(s.schema_dir()), s.__file__]))")
    # -S: no site module, hence no editable-install hook; dependencies come from site-packages
    # placed after the installed copy.
    path = f"{target}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"
    done = subprocess.run([sys.executable, "-S", "-c", probe], env={"PYTHONPATH": path, "PATH": "/usr/bin"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    schema_dir, module = map(Path, json.loads(done.stdout))
    assert module.is_relative_to(target), "the probe must import the installed copy"
    assert schema_dir == target / "runner" / "_schemas"
    sources = sorted(p.name for p in (ROOT / "schemas").glob("*.json"))
    assert {AGENT, "scenario.schema.json", "nova-sonic-input-event.schema.json"} <= set(sources)
    for name in sources:
        assert (schema_dir / name).read_bytes() == (ROOT / "schemas" / name).read_bytes(), name


def test_wheel_contains_the_event_templates_and_typing_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.name for p in (ROOT / "runner/protocol/templates").glob("*.json.j2")}
    assert len(templates) == 11
    assert {f"runner/protocol/templates/{t}" for t in templates} <= names
    assert "runner/py.typed" in names


def test_schema_policy_values_are_the_policy_registry() -> None:
    policy = load_schema(AGENT)["properties"]["policy"]
    assert sorted(policy["enum"]) == sorted(POLICIES)


def test_audio_registries_offer_the_documented_kinds() -> None:
    assert sorted(SOURCES) == ["mic", "null", "wav"]
    assert sorted(SINKS) == ["null", "speaker", "wav"]


def test_wheel_contains_the_served_page(wheel: Path) -> None:
    """`agent-run serve` serves / from the installed package: the page's files are in the wheel."""
    archive = zipfile.ZipFile(wheel)
    static = ROOT / "runner/serve/static"
    files = sorted(p.name for p in static.iterdir() if p.is_file())
    assert {"index.html", "app.js", "pcm-worklet.js", "style.css"} <= set(files)
    for name in files:
        assert archive.read(f"runner/serve/static/{name}") == (static / name).read_bytes(), name
