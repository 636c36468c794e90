"""X-Forwarded-Proto / -Host / -For, believed only from a trusted proxy (`--forwarded-allow-ips`).

Behind a TLS-terminating proxy the server sees `http://10.0.0.5:8080/...` while callers (Twilio)
used `https://agent.example.com/...`. The URL matters twice: the TwiML answer names the stream's
public `wss://` URL, and X-Twilio-Signature is computed over the URL Twilio called. The proxy says
what that was in X-Forwarded-Proto and X-Forwarded-Host, but anyone can send those headers, so they
are applied only when the connection comes from an address in the allow list, as uvicorn's own
`--forwarded-allow-ips` does (same syntax: addresses or networks, comma-separated, `*` for any;
default 127.0.0.1). This middleware replaces uvicorn's proxy-header handling (turned off in
runner.serve.server) so that one rule decides scheme, host and client for every route.

For a trusted peer: the scheme becomes the forwarded one (`https` -> `wss` on a WebSocket), the Host
header the forwarded host, and the client address the last X-Forwarded-For hop. From anyone else
the headers are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from runner.errors import RunnerError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class TrustedProxies:
    """Which peers' X-Forwarded-* headers are believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.networks: list[Network] = []
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.any = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise RunnerError(f"--forwarded-allow-ips: {entry!r} is not an IP address or network "
                                  "(e.g. 127.0.0.1, 10.0.0.0/8, or * for any)") from None

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        return cls(text.split(","))

    def trusts(self, host: str | None) -> bool:
        if self.any:
            return True
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a Unix socket path or a name: not an address we can vouch for
            return False
        return any(address in network for network in self.networks)


class ForwardedHeaders:
    """ASGI middleware: a trusted proxy's X-Forwarded-Proto/Host/For applied to the scope."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if self.trusted.trusts(client[0] if client else None):
                scope = _apply(scope)
        await self.app(scope, receive, send)


def _apply(scope: Scope) -> Scope:
    headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
    found = {name.lower().decode("latin-1"): value.decode("latin-1") for name, value in headers}
    scope = dict(scope)
    proto = _last(found.get("x-forwarded-proto"))
    if proto is not None and proto.lower() in _HTTP_SCHEMES:
        table = _WS_SCHEMES if scope["type"] == "websocket" else _HTTP_SCHEMES
        scope["scheme"] = table[proto.lower()]
    host = _last(found.get("x-forwarded-host"))
    if host and _plain(host):
        headers = [(n, v) for n, v in headers if n.lower() != b"host"] + [(b"host", host.encode("latin-1"))]
        scope["headers"] = headers
    client = _last(found.get("x-forwarded-for"))
    if client and _plain(client):
        port = scope["client"][1] if scope.get("client") else 0
        scope["client"] = (client, port)
    return scope


def _last(value: str | None) -> str | None:
    """The hop nearest to us in a comma-separated forwarded list (the one our proxy wrote)."""
    if value is None:
        return None
    last = value.split(",")[-1].strip()
    return last or None


def _plain(text: str) -> bool:
    """A host[:port] or address without spaces, slashes or control characters."""
    return len(text) <= 255 and all(c.isprintable() and c not in " /\\@?#" for c in text)
