"""Why the server turns a caller away."""

from __future__ import annotations


class CallerRefused(Exception):
    """No conversation for this caller now: the server is full or draining (try another worker)."""

    websocket_code = 1013  # "try again later"
    http_status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
