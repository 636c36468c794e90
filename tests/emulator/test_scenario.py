"""Scenario files: schema validation with located errors, compilation, rendering, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.emulator.scenario import (
    Faults,
    Say,
    Settings,
    ToolCall,
    default_turn,
    load_scenario,
    parse_scenario,
    render_say,
)
from runner.errors import ConfigError

DATA = Path(__file__).parent.parent / "data" / "scenarios"


def test_example_loads() -> None:
    scenario = load_scenario(DATA / "orders.yaml")
    first, second = scenario.turns
    assert first.user == "Where is my order 12345?"
    assert first.items[0] == ToolCall("trackOrderTool", {"orderId": "12345"})
    assert isinstance(first.items[1], Say)
    assert first.items[0].content == '{"orderId": "12345"}'  # type: ignore[union-attr]
    assert second.items == (Say("You're welcome. Goodbye!"),)
    assert scenario.settings == Settings(speech_end_ms=500, speed=8)
    assert scenario.faults == Faults(time_limit_s=30)


def test_invalid_file_reports_every_located_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        load_scenario(DATA / "invalid.yaml")
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 3
    assert any("$.turns[0].assistant[0]" in p for p in problems)
    assert any("$.turns[1].assistant" in p and "should be non-empty" in p for p in problems)
    assert any("$.faults.reset_after_events" in p for p in problems)
    assert all(p.startswith(str(DATA / "invalid.yaml")) for p in problems)


@pytest.mark.parametrize(("data", "where"), [
    ({"turns": [{"assistant": [{"say": "x", "extra": 1}]}]}, "$.turns[0].assistant[0]"),
    ({"settings": {"speed": 0}}, "$.settings.speed"),
    ({"faults": {"throttle": 1}}, "$.faults"),
    ({"turns": [{"assistant": [{"tool": "bad name!"}]}]}, "$.turns[0].assistant[0]"),
    ([], "$"),
])
def test_schema_rejects(data: object, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, source="s.yaml")
    assert f"s.yaml: {where}:" in str(caught.value)


def test_template_syntax_error_is_located() -> None:
    with pytest.raises(ConfigError, match=r"\$\.turns\[0\]\.assistant\[0\]\.say: template error"):
        parse_scenario({"turns": [{"assistant": [{"say": "{{ oops"}]}]})


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("turns: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(bad)


def test_render_say_uses_tool_result_and_is_sandboxed() -> None:
    assert render_say("{{ tool_result.status | upper }}", {"tool_result": {"status": "ok"}}) == "OK"
    with pytest.raises(Exception, match="undefined"):
        render_say("{{ tool_result.status }}", {})


def test_empty_scenario_and_defaults() -> None:
    assert parse_scenario({}).turns == ()
    spoken = default_turn(None, speech_s=2.34)
    assert spoken.items == (Say("I heard you speak for 2.3 seconds."),)
    typed = default_turn("hi", speech_s=None)
    assert render_say(typed.items[0].text, {"user": "hi"}) == "You said: hi"  # type: ignore[union-attr]
