"""Tools of agents/orders.yaml: the seed tool-use sample's two tools, as plain typed functions.

The runner passes each property of the tool's input_schema as a keyword argument and sends the
returned dict to the model as JSON.
"""

from __future__ import annotations

import hashlib
import random
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")

_STATUSES = ("Order received", "Processing", "Preparing for shipment", "Shipped", "In transit",
             "Out for delivery", "Delivered", "Delayed")
_WEIGHTS = (10, 15, 15, 20, 20, 10, 5, 3)


def get_date_and_time() -> dict[str, Any]:
    """Current date and time in US Pacific time."""
    now = datetime.now(PACIFIC)
    return {
        "formattedTime": now.strftime("%I:%M %p"),
        "date": now.strftime("%Y-%m-%d"),
        "year": now.year,
        "month": now.month,
        "day": now.day,
        "dayOfWeek": now.strftime("%A").upper(),
        "timezone": now.strftime("%Z"),
    }


def order_status(order_id: str, notify: bool, today: date) -> dict[str, Any]:
    """The status of `order_id` as of `today`: the same order id always gets the same story."""
    # Seeded from a hash of the id (as the seed sample does) so repeated questions agree.
    seed = int(hashlib.sha256(order_id.encode()).hexdigest(), 16) % 10_000
    rng = random.Random(seed)
    status = rng.choices(_STATUSES, weights=_WEIGHTS, k=1)[0]
    if status == "Delivered":
        when = today - timedelta(days=rng.randint(0, 3))
    elif status == "Out for delivery":
        when = today
    else:
        when = today + timedelta(days=rng.randint(1, 10))
    result: dict[str, Any] = {"orderNumber": order_id, "orderStatus": status}
    if status == "Delivered":
        result["deliveredOn"] = when.isoformat()
    else:
        result["estimatedDelivery"] = when.isoformat()
    if notify and status != "Delivered":
        result["notificationStatus"] = f"You will receive notifications for order {order_id}"
    if status == "Delayed":
        result["message"] = "The order is delayed; we apologise for the inconvenience."
    return result


def track_order(orderId: str, requestNotifications: bool = False) -> dict[str, Any]:
    """Status, estimated delivery and notification handling for an order."""
    order_id = orderId.strip()
    if not order_id:
        return {"error": "Invalid order ID", "orderStatus": "Unknown",
                "message": "The order ID you provided is empty or invalid."}
    return order_status(order_id, requestNotifications, datetime.now(PACIFIC).date())
