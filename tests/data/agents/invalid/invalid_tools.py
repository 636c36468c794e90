"""Handlers for the invalid-agent corpus."""

from __future__ import annotations


def lookup_order(orderId: str) -> dict[str, str]:
    return {"orderId": orderId}


def lookup_by_number(number: int) -> dict[str, int]:
    return {"number": number}
