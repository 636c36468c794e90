"""agents/orders_tools.py: the seed's two tools."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from runner.tools.importer import resolve_handler

AGENTS = Path(__file__).resolve().parents[2] / "agents"


def tool(name: str) -> Any:
    return resolve_handler(f"orders_tools:{name}", AGENTS)


def test_date_and_time_is_pacific() -> None:
    result = tool("get_date_and_time")()
    now = datetime.now(ZoneInfo("America/Los_Angeles"))
    assert result["timezone"] in ("PST", "PDT")
    assert result["dayOfWeek"] == now.strftime("%A").upper()
    assert (result["year"], result["month"], result["day"]) == (now.year, now.month, now.day)
    assert datetime.strptime(result["formattedTime"], "%I:%M %p")


def test_order_status_is_deterministic_per_order_id() -> None:
    status = tool("order_status")
    today = date(2025, 6, 1)
    results = {oid: status(oid, False, today) for oid in (f"ORD-{n}" for n in range(40))}
    assert all(status(oid, False, today) == r for oid, r in results.items())
    assert len({r["orderStatus"] for r in results.values()}) >= 4  # the ids do not all look alike
    for r in results.values():
        if r["orderStatus"] == "Delivered":
            assert today - timedelta(days=3) <= date.fromisoformat(r["deliveredOn"]) <= today
        else:
            assert today <= date.fromisoformat(r["estimatedDelivery"]) <= today + timedelta(days=10)


def test_notifications_and_bad_ids() -> None:
    track = tool("track_order")
    pending = next(oid for oid in (f"A{n}" for n in range(100))
                   if track(oid)["orderStatus"] != "Delivered")
    assert track(pending, requestNotifications=True)["notificationStatus"].endswith(pending)
    assert "notificationStatus" not in track(pending)
    assert track("   ")["error"] == "Invalid order ID"
