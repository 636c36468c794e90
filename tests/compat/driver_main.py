"""The end every compat driver shares: run its conversation, print what it saw as JSON, or fail in
one line. Standard library only: drivers run in the third-party clients' own venvs."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any


def report(conversation: Coroutine[Any, Any, Any]) -> int:
    """Run `conversation`; its result as one JSON line on stdout (exit 0), or one error line (1)."""
    try:
        seen = asyncio.run(conversation)
    except BaseException as exc:  # one line, whatever failed: the test shows it
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        print(f"client failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(seen))
    return 0
