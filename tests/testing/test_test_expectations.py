"""Expectations are pure: each kind against hand-made turn records, and the message a user reads."""

from __future__ import annotations

from typing import Any

import pytest

from runner.testing.expectations import EXPECTATIONS, Expectation, failure_message
from runner.testing.model import Where
from runner.testing.record import ToolCallRecord, TurnRecord

HERE = Where("t.test.yaml", 12, 11)


def make(kind: str, value: Any) -> Expectation:
    return EXPECTATIONS[kind](value, HERE)


TURN = TurnRecord(
    index=2, input="> typed: Where is my order 12345?", heard=("Where is my order 12345?",),
    said=("Let me check.", "Your order 12345 is shipped."),
    tool_calls=(ToolCallRecord("trackOrderTool",
                               {"orderId": "12345", "notify": False, "meta": {"a": 1, "b": 2}},
                               {"orderStatus": "Shipped"}, None, 12.5),),
    interrupted=False, first_audio_ms=40.0, total_tokens=300,
    lines=("> typed: Where is my order 12345?", "assistant: Your order 12345 is shipped."))
QUIET = TurnRecord(index=1, input="> (waiting for the assistant)")


@pytest.mark.parametrize(("kind", "value"), [
    ("tool_called", "trackOrderTool"),
    ("tool_called", {"name": "trackOrderTool", "args": {"orderId": "12345"}}),
    ("tool_called", {"name": "trackOrderTool", "args": {"meta": {"a": 1}, "notify": False}}),
    ("tool_called", {"name": "trackOrderTool", "args_regex": {"orderId": "^123", "notify": "false"}}),
    ("no_tool_called", "getDateAndTimeTool"),
    ("says", "ORDER 12345 IS SHIPPED"),
    ("says", {"contains": ["check", "shipped"], "not_contains": "delivered", "regex": r"order \d+ is",
              "not_regex": "cancel+ed"}),
    ("heard", {"regex": "order 1234"}),
    ("interrupted", False),
    ("first_audio_within_ms", 40),
    ("tool_latency_below_ms", 13),
    ("tokens_below", 301),
])
def test_holds(kind: str, value: Any) -> None:
    assert make(kind, value).check(TURN) is None


@pytest.mark.parametrize(("kind", "value", "instead"), [
    ("tool_called", "getDateAndTimeTool", "only trackOrderTool called"),
    ("tool_called", {"name": "trackOrderTool", "args": {"orderId": "999"}},
     'trackOrderTool was called with {"meta": {"a": 1, "b": 2}, "notify": false, "orderId": "12345"}'),
    ("tool_called", {"name": "trackOrderTool", "args": {"notify": 0}}, "trackOrderTool was called with"),
    ("tool_called", {"name": "trackOrderTool", "args_regex": {"missing": "."}},
     "trackOrderTool was called with"),
    ("no_tool_called", True, 'trackOrderTool was called with {"meta"'),
    ("says", "delivered",
     "no 'delivered' in what the assistant said: 'Let me check. Your order 12345 is shipped.'"),
    ("says", {"not_contains": "shipped"}, "'shipped' is there in what the assistant said"),
    ("says", {"not_regex": r"\d{5}"}, "/\\d{5}/ matches '12345' in what the assistant said"),
    ("heard", "tracking", "no 'tracking' in what the model heard: 'Where is my order 12345?'"),
    ("interrupted", True, "the assistant was not interrupted"),
    ("first_audio_within_ms", 39, "the first audio came after 40 ms"),
    ("tool_latency_below_ms", 12, "trackOrderTool took 12 ms"),
    ("tokens_below", 300, "300 tokens used"),
])
def test_fails_saying_what_happened(kind: str, value: Any, instead: str) -> None:
    got = make(kind, value).check(TURN)
    assert got is not None and got.startswith(instead), got


@pytest.mark.parametrize(("kind", "value", "instead"), [
    ("tool_called", "x", "no tool was called"),
    ("says", "hi", "the assistant said nothing"),
    ("heard", "hi", "the model reported hearing nothing (no USER transcript)"),
    ("first_audio_within_ms", 5000, "no assistant audio came"),
    ("tokens_below", 5, "the model reported no token usage"),
])
def test_on_an_empty_turn(kind: str, value: Any, instead: str) -> None:
    assert make(kind, value).check(QUIET) == instead
    assert make("no_tool_called", True).check(QUIET) is None
    assert make("tool_latency_below_ms", 1).check(QUIET) is None


def test_a_tool_without_result_is_slow() -> None:
    turn = TurnRecord(index=1, input="", tool_calls=(ToolCallRecord("t", {}),))
    assert make("tool_latency_below_ms", 100).check(turn) == "t gave no result"


def test_a_bad_regex_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"invalid regular expression '\['"):
        make("says", {"regex": "["})
    with pytest.raises(ValueError, match="invalid regular expression"):
        make("tool_called", {"name": "t", "args_regex": {"a": "(?P<"}})


def test_the_failure_message_shows_where_what_and_the_turn() -> None:
    expectation = make("says", "delivered")
    instead = expectation.check(TURN)
    assert instead is not None
    assert failure_message(expectation, instead, TURN) == (
        "t.test.yaml:12: expected the assistant's words: contains 'delivered'\n"
        "  but: no 'delivered' in what the assistant said: 'Let me check. Your order 12345 is shipped.'\n"
        "  turn 2:\n"
        "    > typed: Where is my order 12345?\n"
        "    assistant: Your order 12345 is shipped.")


def test_every_kind_is_in_the_schema() -> None:
    from runner.schemas import AGENT_TEST, load_schema
    kinds = load_schema(AGENT_TEST)["$defs"]["expectation"]["properties"]
    assert set(kinds) == set(EXPECTATIONS)
