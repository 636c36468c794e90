"""runner.serve.forwarded: which peers' X-Forwarded-* are believed, and what they change (pure ASGI,
no server: the end-to-end checks are in tests/twilio/test_twilio_proxy_and_hangup.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runner.errors import RunnerError
from runner.serve.forwarded import ForwardedHeaders, TrustedProxies

HEADERS = [(b"host", b"10.0.0.5:8080"), (b"x-forwarded-proto", b"https"),
           (b"x-forwarded-host", b"agent.example.com"), (b"x-forwarded-for", b"198.51.100.1, 203.0.113.7")]


def seen(kind: str, client: str, allow: str, headers: list[tuple[bytes, bytes]] = HEADERS) -> dict[str, Any]:
    got: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.update(scope)

    scope = {"type": kind, "scheme": "ws" if kind == "websocket" else "http", "client": (client, 5555),
             "headers": headers}
    asyncio.run(ForwardedHeaders(app, TrustedProxies.parse(allow))(scope, None, None))  # type: ignore[arg-type]
    return got


def test_the_allow_list_takes_addresses_networks_and_star() -> None:
    trusted = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8,::1")
    assert trusted.trusts("127.0.0.1") and trusted.trusts("10.20.30.40") and trusted.trusts("::1")
    assert not trusted.trusts("192.168.1.1") and not trusted.trusts(None) and not trusted.trusts("host")
    assert TrustedProxies.parse("*").trusts("198.51.100.1")
    with pytest.raises(RunnerError, match=r"'proxy\.local' is not an IP address or network"):
        TrustedProxies.parse("127.0.0.1,proxy.local")


def test_a_trusted_proxy_sets_scheme_host_and_client() -> None:
    http = seen("http", "10.0.0.2", "10.0.0.0/8")
    assert http["scheme"] == "https"
    assert dict(http["headers"])[b"host"] == b"agent.example.com"
    ws = seen("websocket", "10.0.0.2", "10.0.0.0/8")
    assert ws["scheme"] == "wss"


def test_the_last_forwarded_for_hop_is_the_client() -> None:
    # The proxy appends the address it was called from: the last entry is the one it vouches for.
    assert seen("http", "10.0.0.2", "10.0.0.0/8")["client"] == ("203.0.113.7", 5555)


def test_anyone_else_is_ignored() -> None:
    http = seen("http", "192.168.1.9", "10.0.0.0/8")
    assert http["scheme"] == "http" and dict(http["headers"])[b"host"] == b"10.0.0.5:8080"
    assert http["client"] == ("192.168.1.9", 5555)


def test_a_malformed_forwarded_host_is_not_used() -> None:
    headers = [(b"host", b"10.0.0.5:8080"), (b"x-forwarded-host", b"evil.example/path")]
    assert dict(seen("http", "127.0.0.1", "127.0.0.1", headers)["headers"])[b"host"] == b"10.0.0.5:8080"
