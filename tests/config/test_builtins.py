from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.errors import ToolError
from runner.tools.builtins import BUILTINS, calculator, current_datetime, days_between


def test_current_datetime_in_a_timezone() -> None:
    result = current_datetime("Asia/Tokyo")
    now = datetime.now(ZoneInfo("Asia/Tokyo"))
    stamp = datetime.fromisoformat(result["iso"])
    assert abs(stamp - now) < timedelta(seconds=5)
    assert result["utc_offset"] == "+0900" and result["timezone"] == "Asia/Tokyo"
    assert result["day_of_week"] == stamp.strftime("%A")
    assert (result["year"], result["month"], result["day"]) == (stamp.year, stamp.month, stamp.day)
    assert result["date"] == stamp.date().isoformat()
    assert current_datetime()["timezone"] == "UTC"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", ""])
def test_current_datetime_rejects_unknown_zones(zone: str) -> None:
    with pytest.raises(ToolError, match="unknown timezone"):
        current_datetime(zone)


@pytest.mark.parametrize(("expression", "result"), [
    ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("7 / 2", 3.5), ("7 // 2", 3), ("7 % 4", 3),
    ("2 ^ 10", 1024), ("-3 + +1", -2), ("84.50 * 0.18", 15.21), ("sqrt(16) + abs(-1)", 5),
    ("round(2.567, 2)", 2.57), ("max(1, 5, 3)", 5), ("0.1 + 0.2", 0.3), ("2 * pi", 6.2831853072),
])
def test_calculator(expression: str, result: float) -> None:
    assert calculator(expression) == {"expression": expression, "result": result}


@pytest.mark.parametrize(("expression", "message"), [
    ("__import__('os').system('true')", "unsupported expression element: Call"),
    ("x + 1", "unknown name 'x'"),
    ("(1).__class__", "unsupported expression element: Attribute"),
    ("9 ** 9 ** 9", "number too large"),
    ("10 ** 200", "number too large"),
    ("1 / 0", "division by zero"),
    ("sqrt(-1)", "cannot evaluate"),
    ("'a' * 3", "unsupported expression element: Constant"),
    ("True + 1", "unsupported expression element: Constant"),
    ("2 +", "not an arithmetic expression"),
    ("1+" * 150 + "1", "expression too long"),
])
def test_calculator_refuses(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        calculator(expression)


def test_days_between() -> None:
    assert days_between("2025-03-01", "2025-03-04") == {
        "start_date": "2025-03-01", "end_date": "2025-03-04", "days": 3,
        "start_weekday": "Saturday", "end_weekday": "Tuesday"}
    with pytest.raises(ToolError, match="YYYY-MM-DD"):
        days_between("tomorrow", "2025-03-04")


def test_registry() -> None:
    assert set(BUILTINS) == {"current_datetime", "calculator", "days_between", "end_call", "transfer"}
