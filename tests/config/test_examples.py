"""The shipped example agents and the schema that describes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from runner.config.loader import check_agent
from runner.config.yaml import load
from runner.models import ALL_VOICES, ENDPOINTING_SENSITIVITIES, SAMPLE_RATES
from runner.schemas import AGENT, load_schema

ROOT = Path(__file__).resolve().parents[2]
# Agent files (the *.test.yaml beside them are test files: tests/testing).
EXAMPLES = sorted(p for p in (ROOT / "agents").glob("*.yaml") if not p.name.endswith(".test.yaml"))


def test_there_are_three_examples() -> None:
    assert {p.stem for p in EXAMPLES} >= {"orders", "simple", "concierge"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_loads_with_no_problems(path: Path) -> None:
    config, problems = check_agent(path)
    assert problems == []
    assert config is not None and config.system_prompt.strip()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_has_schema_modeline_and_validates_as_an_editor_would(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schemas/agent.schema.json"
    assert (path.parent / "../schemas/agent.schema.json").resolve().is_file()
    assert list(Draft202012Validator(load_schema(AGENT)).iter_errors(load(text).data)) == []


def test_examples_cover_the_features() -> None:
    agents = {p.stem: check_agent(p)[0] for p in EXAMPLES}
    orders, simple, concierge = agents["orders"], agents["simple"], agents["concierge"]
    assert orders is not None and simple is not None and concierge is not None
    assert orders.policy == "barge-in" and orders.model.id == "amazon.nova-2-sonic-v1:0"
    assert orders.voice == "matthew"
    assert [t.name for t in orders.tools] == ["getDateAndTimeTool", "trackOrderTool"]
    assert simple.policy == "simple" and simple.tools == ()
    assert concierge.endpointing_sensitivity == "MEDIUM" and concierge.greeting
    assert all(t.handler.startswith("builtin:") for t in concierge.tools)
    assert "The Harbour Hotel" in concierge.system_prompt


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema(AGENT)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _objects(node: object) -> list[dict[str, object]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found += _objects(value)
    elif isinstance(node, list):
        for value in node:
            found += _objects(value)
    return found


def test_schema_documents_every_field_and_closes_every_object() -> None:
    schema = load_schema(AGENT)
    for obj in _objects(schema):
        # `vars` and a tool's input_schema are open by design: user-chosen names.
        assert "additionalProperties" in obj or str(obj.get("description")).startswith("JSON Schema")
        for name, prop in obj.get("properties", {}).items():  # type: ignore[attr-defined]
            assert prop.get("description"), f"{name} has no description"


def test_schema_enums_match_the_model_registry() -> None:
    props = load_schema(AGENT)["properties"]
    assert sorted(props["voice"]["enum"]) == sorted(ALL_VOICES)
    assert props["turn_detection"]["properties"]["endpointing_sensitivity"]["enum"] == list(
        ENDPOINTING_SENSITIVITIES)
    for key in ("input_sample_rate", "output_sample_rate"):
        assert props["audio"]["properties"][key]["enum"] == list(SAMPLE_RATES)
