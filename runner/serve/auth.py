"""Who may call: a shared token, required unless the server listens on loopback only.

The token comes as `?token=...` (a browser's WebSocket cannot set headers) or as
`Authorization: Bearer ...`. It is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

from runner.errors import RunnerError

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

TOKEN_ENV = "AGENT_RUN_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_bind(host: str, token: str | None, *, no_auth: bool) -> None:
    """Refuse to serve callers beyond this machine with no way to tell who they are."""
    if token is None and not no_auth and not is_loopback(host):
        raise RunnerError(f"--host {host} accepts callers from other machines: give a token (--token or "
                          f"{TOKEN_ENV}) that callers must present, or --no-auth to serve anyone")


def presented_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return conn.query_params.get("token")


def token_ok(expected: str | None, conn: HTTPConnection) -> bool:
    """True when no token is required, or the caller presented the right one."""
    if expected is None:
        return True
    given = presented_token(conn)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
