"""Tool of oversized.yaml: a result of a few hundred bytes (the template inflates it)."""

from __future__ import annotations

from typing import Any


def table() -> dict[str, Any]:
    return {"rows": [f"row {i:03d}" for i in range(30)]}
