"""`when:` conditions, the fallback and templated tool inputs: matching, turn choice, loading
errors at FILE:LINE:COL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.config import yaml
from runner.emulator.scenario import (
    Say,
    ToolCall,
    check_embedded_scenario,
    choose_turn,
    load_scenario,
    parse_scenario,
    render_arguments,
)
from runner.emulator.when import MAX_HEARD_CHARS, When, WhenError, compile_when, words_of
from runner.errors import ConfigError
from runner.protocol.sandbox import TemplateLimitError

# -- conditions -----------------------------------------------------------------------------------

def test_words_ignore_case_punctuation_and_order() -> None:
    when = compile_when("order STATUS")
    assert when.match("What's the status of my Order?") == {}
    assert when.match("status: order #12") == {}
    assert when.match("Where is my order?") is None  # every word must be said
    assert when.match("my orders' statuses") is None  # whole words, not parts of words


def test_a_phrase_in_words_is_consecutive_words() -> None:
    when = compile_when({"words": ["track my order", "please"]})
    assert when.match("Please, TRACK my... order!") == {}
    assert when.match("please track the order for me") is None
    assert words_of("Don't_stop—now") == ("don", "t", "stop", "now")


def test_regex_is_searched_case_insensitively_with_named_captures() -> None:
    when = compile_when({"regex": r"order (?:number )?(?P<order_id>\d+)(?: for (?P<name>\w+))?"})
    assert when.match("Where is ORDER number 12345?") == {"order_id": "12345", "name": ""}
    assert when.match("order 7 for Ann please") == {"order_id": "7", "name": "Ann"}
    assert when.match("my order is late") is None
    assert compile_when({"regex": "(?-i:Exact)"}).match("exact") is None
    assert when.groups == {"order_id", "name"}


def test_words_and_regex_together_must_both_match() -> None:
    when = compile_when({"words": ["cancel"], "regex": r"(?P<n>\d{3,})"})
    assert when.match("Cancel order 123") == {"n": "123"}
    assert when.match("Track order 123") is None
    assert when.match("Cancel it") is None
    assert when.describe() == "words cancel and regex '(?P<n>\\\\d{3,})'"


def test_only_the_start_of_a_very_long_input_is_matched() -> None:
    when = compile_when("needle")
    assert when.match("x " * (MAX_HEARD_CHARS // 2) + "needle") is None
    assert when.match("needle " + "x " * MAX_HEARD_CHARS) == {}


def test_captures_with_lone_surrogates_become_replacement_characters() -> None:
    assert compile_when({"regex": "(?P<all>.+)"}).match("a\ud800b") == {"all": "a\ufffdb"}


@pytest.mark.parametrize(("data", "key", "message"), [
    ("?!", "", "'?!' has no words to look for"),
    ({"words": ["ok", "..."]}, "words", "'...' has no words to look for"),
    ({"regex": "(open"}, "regex",
     "invalid regular expression: missing ), unterminated subpattern at position 0"),
    ({"regex": "(?P<a>x)(?P<a>y)"}, "regex", "redefinition of group name 'a'"),
    ({"regex": "a{99999999999}"}, "regex", "the repetition number is too large"),
    ({"regex": "(" * 5000 + ")" * 5000}, "regex", "invalid regular expression: groups nested too deeply"),
])
def test_bad_conditions_say_why(data: str | dict[str, object], key: str, message: str) -> None:
    with pytest.raises(WhenError) as caught:
        compile_when(data)
    assert caught.value.key == key and message in str(caught.value)


# -- which turn answers -----------------------------------------------------------------------------

SHOP = parse_scenario({
    "turns": [
        {"user": "Hello.", "assistant": [{"say": "Welcome!"}]},
        {"when": {"regex": r"order (?P<order_id>\d+)"}, "assistant": [
            {"tool": "trackOrderTool", "input": {"orderId": "{{ match.order_id }}"}}]},
        {"when": "hours", "assistant": [{"say": "We open at nine."}]},
        {"when": "open today", "assistant": [{"say": "Never reached: 'hours' comes first."}]},
        {"user": "Bye.", "assistant": [{"say": "Goodbye!"}]},
    ],
    "fallback": [{"say": "Sorry, I didn't catch that."}],
})


def test_the_first_matching_turn_answers_and_can_answer_again() -> None:
    first = choose_turn(SHOP, "Where is order 12?", 0, speech_s=None)
    assert (first.label, first.ordered, first.match) == ("turns[1]", False, {"order_id": "12"})
    again = choose_turn(SHOP, "and order 34", 0, speech_s=None)
    assert (again.label, again.match) == ("turns[1]", {"order_id": "34"})
    assert choose_turn(SHOP, "Are you open today? Your hours?", 0, speech_s=None).label == "turns[2]"


def test_unmatched_input_plays_the_turns_without_when_in_order_then_the_fallback() -> None:
    labels = [choose_turn(SHOP, "something else", position, speech_s=None) for position in range(3)]
    assert [(c.label, c.ordered) for c in labels] == [("turns[0]", True), ("turns[4]", True),
                                                       ("fallback", False)]
    assert labels[2].turn.items == (Say("Sorry, I didn't catch that."),)


def test_without_a_transcript_when_turns_cannot_match() -> None:
    # Speech the emulator has no words for: in order, whatever `user:` says.
    assert choose_turn(SHOP, None, 0, speech_s=1.0).label == "turns[0]"
    only_when = parse_scenario({"turns": [{"when": "hours", "assistant": [{"say": "Nine."}]}]})
    default = choose_turn(only_when, None, 0, speech_s=2.0)
    assert default.label == "default"
    assert default.turn.items == (Say("I heard you speak for 2.0 seconds."),)
    assert choose_turn(only_when, "hi", 0, speech_s=None).turn.items == (Say("You said: {{ user }}"),)


def test_tool_input_templates_render_the_captures() -> None:
    call = ToolCall("t", {"id": "{{ match.order_id }}", "note": "for {{ user }}", "n": 3,
                          "nested": [{"x": "{{ match.order_id | int + 1 }}"}, True], "plain": "a {b}"})
    content = render_arguments(call, {"user": "me", "match": {"order_id": "41"}})
    assert json.loads(content) == {"id": "41", "note": "for me", "n": 3, "nested": [{"x": "42"}, True],
                                   "plain": "a {b}"}


def test_tool_input_templates_fail_strictly_or_degrade_and_are_bounded() -> None:
    call = ToolCall("t", {"id": "#{{ match.order_id }}"})
    with pytest.raises(Exception, match="order_id"):
        render_arguments(call, {"match": {}})
    assert json.loads(render_arguments(call, {"match": {}}, lenient=True)) == {"id": "#"}
    with pytest.raises(TemplateLimitError):
        render_arguments(ToolCall("t", {"x": "{{ 'x' * 100000000 }}"}), {})


# -- loading ---------------------------------------------------------------------------------------

def test_a_scenario_with_when_fallback_and_templated_inputs_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("""\
turns:
  - when: {regex: 'order (?P<order_id>\\d+)', words: [where]}
    assistant:
      - tool: trackOrderTool
        input: {orderId: "{{ match.order_id }}"}
      - say: "Order {{ match['order_id'] }} is {{ tool_result.status }}."
  - assistant: [{say: Hi.}]
fallback:
  - say: "Sorry, I didn't catch {{ user }}."
""")
    scenario = load_scenario(path)
    assert scenario.turns[0].when is not None and scenario.turns[0].when.groups == {"order_id"}
    assert scenario.turns[1].when is None
    assert scenario.fallback == (Say("Sorry, I didn't catch {{ user }}."),)
    assert scenario.matches_words
    assert not parse_scenario({"turns": [{"assistant": [{"say": "x"}]}]}).matches_words
    assert isinstance(scenario.turns[0].when, When)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return [p.format().removeprefix(f"{path}:") for p in caught.value.problems]  # type: ignore[attr-defined]


def test_bad_conditions_and_templates_are_located(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
turns:
  - when: {regex: "order (?P<order_id>\\\\d+"}
    assistant: [{say: ok}]
  - when: {regexp: x}
    assistant: [{say: hi}]
  - when: {}
    assistant: [{say: hi}]
  - when: {words: [order, "?!"]}
    assistant:
      - tool: trackOrderTool
        input: {order_id: "{{ match.order_id }}", n: ["{{ user"]}
  - when:
      regex: 'order (?P<order_id>\\d+)'
    assistant:
      - tool: trackOrderTool
        input: {order_id: "{{ match.orderid }}"}
      - say: |
          Order {{ match['order_id'] }}
          is {{ match.status }}.
  - when: ""
    assistant: [{say: hi}]
  - when: 5
    assistant: [{say: hi}]
fallback:
  - say: "{{ match.x }}"
""") == [
        "2:19: error: turns[0].when.regex: invalid regular expression: missing ), unterminated subpattern "
        "at position 6",
        "4:12: error: unknown key 'regexp' in turns[1].when; did you mean 'regex'?",
        "6:5: error: turns[2].when: needs `words` (words the user says) or `regex` (a regular expression), "
        "or both",
        "8:27: error: turns[3].when.words[1]: '?!' has no words to look for (punctuation is ignored)",
        "11:27: error: turns[3].assistant[0].input.order_id: `match.order_id` is not available: `match` "
        "holds the named groups of the turn's `when: {regex: ...}`, and this turn has none",
        "11:55: error: turns[3].assistant[0].input.n[0]: template syntax error: unexpected end of template, "
        "expected 'end of print statement'.",
        "16:27: error: turns[4].assistant[0].input.order_id: `match.orderid` is not a named group of this "
        "turn's `when` regex (its groups: order_id)",
        "19:1: error: turns[4].assistant[1].say: `match.status` is not a named group of this turn's `when` "
        "regex (its groups: order_id)",
        "20:5: error: turns[5].when: must not be empty",
        "22:5: error: turns[6].when: expected a string or a mapping, got a number (5)",
        "25:10: error: fallback[0].say: `match.x` is always empty in the fallback (it answers input that "
        "matched no `when:`)",
    ]


def test_an_empty_fallback_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, "fallback: []\n") == [
        "1:1: error: fallback: must not be empty (add a `say` or `tool` item)"]


def test_the_readme_example_loads_and_answers_as_documented(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("A scenario can follow what the user says"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    example = section[start:section.index("\n```", start)]
    (tmp_path / "readme.yaml").write_text(example)
    scenario = load_scenario(tmp_path / "readme.yaml")
    assert len(scenario.turns) == 3 and len(scenario.fallback) == 1
    order = choose_turn(scenario, "Where is order number 4711?", 0, speech_s=None)
    call = order.turn.items[0]
    assert isinstance(call, ToolCall)
    assert json.loads(render_arguments(call, {"match": order.match})) == {"orderId": "4711"}
    assert choose_turn(scenario, "Hours? When are you OPENING?", 0, speech_s=None).label == "turns[1]"
    assert [choose_turn(scenario, "Hi", n, speech_s=None).label for n in (0, 1)] == ["turns[2]", "fallback"]


def test_a_scenario_embedded_in_another_file_is_located_in_that_file(tmp_path: Path) -> None:
    text = """\
cases:
  - name: order
    model:
      turns:
        - when: {regex: "(unclosed"}
          assistant: [{say: "{{ match.x }}"}]
"""
    doc = yaml.load(text)
    scenario, found = check_embedded_scenario(doc, ("cases", 0, "model"), "t.test.yaml")
    assert scenario is None
    assert [p.format() for p in found] == [
        "t.test.yaml:5:25: error: turns[0].when.regex: invalid regular expression: missing ), unterminated "
        "subpattern at position 0",
        "t.test.yaml:6:29: error: turns[0].assistant[0].say: `match.x` is not available: `match` holds the "
        "named groups of the turn's `when: {regex: ...}`, and this turn has none",
    ]
    good = yaml.load("model:\n  turns: [{when: hi, assistant: [{say: Hello.}]}]\n")
    scenario, found = check_embedded_scenario(good, ("model",), "t.test.yaml")
    assert found == [] and scenario is not None and scenario.turns[0].when is not None
