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
    path = DATA / "invalid.yaml"
    assert [p.format() for p in caught.value.problems] == [  # type: ignore[attr-defined]
        f"{path}:4:9: error: turns[0].assistant[0]: an assistant item needs `say` (text to speak) or "
        "`tool` (a tool call)",
        f"{path}:4:9: error: unknown key 'sing' in turns[0].assistant[0] (allowed: input, say, tool)",
        f"{path}:5:5: error: turns[1].assistant: must not be empty (add a `say` or `tool` item)",
        f"{path}:7:3: error: faults.reset_after_events: must be at least 1, got 0",
    ]
    assert str(caught.value).startswith(f"{path}: 4 error(s) in the scenario file:\n{path}:4:9: error:")


def problems(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "s.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return [p.format().removeprefix(f"{path}:") for p in caught.value.problems]  # type: ignore[attr-defined]


def test_unknown_keys_get_a_did_you_mean_and_every_problem_is_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
turns:
  - user: hi
    assistant:
      - sayy: hello
  - usr: hi
    assistant: [{say: ok, input: {a: 1}}]
faults: {throttle: 2}
""") == [
        "4:9: error: unknown key 'sayy' in turns[0].assistant[0]; did you mean 'say'?",
        "5:5: error: unknown key 'usr' in turns[1]; did you mean 'user'?",
        "6:27: error: turns[1].assistant[0]: `input` goes with `tool` (the tool's arguments)",
        "7:10: error: unknown key 'throttle' in faults; did you mean 'throttle_connects'?",
    ]


@pytest.mark.parametrize(("data", "message"), [
    ({"turns": [{"assistant": [{"say": "x", "extra": 1}]}]}, "unknown key 'extra' in turns[0].assistant[0]"),
    ({"settings": {"speed": 0}}, "settings.speed: must be greater than 0, got 0"),
    ({"turns": [{"assistant": [{"tool": "bad name!"}]}]},
     "turns[0].assistant[0].tool: 'bad name!' does not match"),
    ({"turns": [{"assistant": [{"say": "x", "tool": "t"}]}]},
     "turns[0].assistant[0]: an item is either `say` or `tool`, not both"),
    ({"turns": [{"user": "x"}]}, "missing required key 'assistant' in turns[0]"),
    ([], "a scenario file must be a mapping"),
])
def test_schema_rejects(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, source="s.yaml")
    assert f"s.yaml:1:1: error: {message}" in str(caught.value)


def test_template_syntax_errors_are_located_at_load(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
turns:
  - assistant:
      - say: "Hello {{ user"
      - say: |
          Line one.
          {% if x %}unclosed
""") == [
        "3:14: error: turns[0].assistant[0].say: template syntax error: unexpected end of template, "
        "expected 'end of print statement'.",
        "6:1: error: turns[0].assistant[1].say: template syntax error: Unexpected end of template. Jinja "
        "was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost block that needs "
        "to be closed is 'if'.",
    ]


def test_unreadable_non_utf8_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml:1:1: error: no such file"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r":1:1: error: is a directory, not a file"):
        load_scenario(tmp_path)
    assert problems(tmp_path, "turns: [\n") == [
        "2:1: error: invalid YAML: expected the node content, but found '<stream end>' "
        "(while parsing a flow node at line 2)"]
    assert problems(tmp_path, b"turns:\n  - user: caf\xe9\n") == [
        "2:14: error: the file is not UTF-8 text (byte 0xe9 cannot be decoded)"]
    assert problems(tmp_path, "settings: {}\nsettings: {}\n") == [
        "2:1: error: duplicate key 'settings' (first defined at line 1)"]


def test_an_empty_file_is_the_default_behaviour(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing scripted\n")
    assert load_scenario(tmp_path / "empty.yaml").turns == ()


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
