"""Tools of faulty.yaml: each one fails in a different way (except countTool), for the e2e tests."""

from __future__ import annotations

import asyncio
from typing import Any


async def slow(seconds: float = 5.0) -> dict[str, Any]:
    """Sleeps far past the tool's timeout_s."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def crash() -> dict[str, Any]:
    """Raises, as a handler whose backend is down would."""
    raise RuntimeError("database unreachable")


def weird() -> dict[str, Any]:
    """Returns something JSON cannot encode."""
    return {"value": {1, 2, 3}}


def count(count: int) -> dict[str, Any]:
    """The one tool that works (when given an integer, as its schema requires)."""
    return {"count": count, "double": count * 2}
