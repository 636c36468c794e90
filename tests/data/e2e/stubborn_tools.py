"""Tools of stubborn.yaml: handlers that try to take the whole run down with them."""

from __future__ import annotations

import sys
import time
from typing import Any


def hang() -> dict[str, Any]:
    """A sync handler stuck far past its timeout_s (a blocking call to a dead backend)."""
    time.sleep(30)
    return {"slept": 30}


def leave() -> dict[str, Any]:
    """Calls sys.exit(), as a handler copied from a script might."""
    sys.exit(2)


async def interrupt() -> dict[str, Any]:
    """An async handler raising KeyboardInterrupt."""
    raise KeyboardInterrupt


def huge() -> dict[str, Any]:
    """A result far larger than the tool's max_result_bytes (a whole table)."""
    return {"rows": [f"row {i:06d}" for i in range(20000)]}
