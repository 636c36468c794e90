"""The `tool_result` expectation on turn records (pure: no conversation)."""

from __future__ import annotations

from typing import Any

import pytest

from runner.testing.expectations import EXPECTATIONS
from runner.testing.model import Where
from runner.testing.record import ToolCallRecord, TurnRecord

TURN = TurnRecord(index=1, input="> typed: order 1001", tool_calls=(
    ToolCallRecord("lookup_order", {"orderId": "1001"}, result={"status": "shipped", "eta": "2026-12-03"},
                   duration_ms=9.0),
    ToolCallRecord("lookup_order", {"orderId": "999"}, error="HTTP 404 File not found", duration_ms=2.0),
    ToolCallRecord("slow", {}),
))


def check(value: Any, turn: TurnRecord = TURN) -> str | None:
    return EXPECTATIONS["tool_result"](value, Where("t.test.yaml", 3)).check(turn)


@pytest.mark.parametrize("value", [
    {"name": "lookup_order"},
    {"name": "lookup_order", "contains": '"status": "SHIPPED"'},  # case-insensitive
    {"name": "lookup_order", "contains": ["shipped", "2026-12-03"], "not_contains": "cancelled"},
    {"name": "lookup_order", "regex": r'"eta": "\d{4}-12-'},
    {"name": "lookup_order", "error": True, "contains": "404"},  # the second call's error
])
def test_holds(value: Any) -> None:
    assert check(value) is None


@pytest.mark.parametrize(("value", "instead"), [
    ({"name": "lookup_order", "contains": "cancelled"},
     "no 'cancelled' in \"{\\\"status\\\": \\\"shipped\\\", \\\"eta\\\": \\\"2026-12-03\\\"}\"; "
     "an error: HTTP 404 File not found"),
    ({"name": "lookup_order", "error": True, "contains": "500"}, 'a result: {"eta": "2026-12-03", '
     '"status": "shipped"}; no \'500\' in "HTTP 404 File not found"'),
    ({"name": "end_call"}, "end_call was not called (only lookup_order, slow)"),
    ({"name": "slow"}, "no result came"),
])
def test_fails_saying_what_happened(value: Any, instead: str) -> None:
    assert check(value) == instead


def test_no_calls_at_all() -> None:
    assert check({"name": "x"}, TurnRecord(index=1, input="")) == "x was not called"


def test_describes_itself() -> None:
    parse = EXPECTATIONS["tool_result"]
    assert parse({"name": "t", "error": True, "contains": "404"}, Where("f", 1)).describe() == \
        "an error result of t that contains '404'"
    assert parse({"name": "t"}, Where("f", 1)).describe() == "a result of t"
