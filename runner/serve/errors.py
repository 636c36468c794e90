"""Why the server turns a caller away."""

from __future__ import annotations

from collections.abc import Iterable


class CallerRefused(Exception):
    """No conversation for this caller now: the server is full or draining (try another worker)."""

    websocket_code = 1013  # "try again later"
    http_status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownAgent(Exception):
    """The caller asked for an agent this server does not serve (`?agent=NAME`)."""

    websocket_code = 4404  # an application code (4000-4999): "no such agent", as HTTP's 404
    http_status = 404

    def __init__(self, name: str, served: Iterable[str]) -> None:
        self.reason = f"unknown agent {name[:64]!r}: this server serves {', '.join(served)}"
        super().__init__(self.reason)


def close_reason(text: str) -> str:
    """`text` cut to what a WebSocket close frame carries (123 bytes of UTF-8)."""
    return text.encode()[:123].decode(errors="ignore")
