"""A tool slow enough to still be running when its stream is reset."""

from __future__ import annotations

import time
from typing import Any


def look_up(item: str = "order") -> dict[str, Any]:
    time.sleep(1.0)
    return {"item": item, "status": "found"}
