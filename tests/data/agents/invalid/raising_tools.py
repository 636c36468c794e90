"""A handler module that fails while it is imported."""

from __future__ import annotations

SETTINGS: dict[str, str] = {}
API_URL = SETTINGS["api_url"]


def lookup(orderId: str) -> str:
    return orderId
