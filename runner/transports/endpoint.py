"""Endpoint URLs: one check shared by `check` (model.endpoint) and a run (the agent file's endpoint
and the AWS_ENDPOINT_URL_BEDROCK_RUNTIME / AWS_ENDPOINT_URL environment variables).

The SDK does not validate an endpoint when the client is built: `https://` (no host) fails inside
its request pipeline, where the failure is never delivered and the run hung; a port out of range
did the same. So an endpoint is refused before any client exists unless it is `http(s)://HOST`
with an optional port in 1..65535 and an optional path, and nothing else (no user name or
password, query or fragment, whitespace or control characters).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

SCHEMES = ("https", "http")
# Where a run's endpoint can come from, after the agent file's model.endpoint (the SDK's order).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL")


def endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be a Bedrock runtime endpoint (None when it can)."""
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "must be a URL without spaces or control characters, like https://HOST[:PORT]"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc}); expected https://HOST[:PORT]"
    if parts.scheme.lower() not in SCHEMES:
        return f"must start with https:// (or http://), not {parts.scheme + '://' if parts.scheme else url!r}"
    if not parts.hostname:
        return "has no host name; expected https://HOST[:PORT]"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query (?...) or fragment (#...)"
    if port == 0:
        return "port 0 cannot be connected to; expected a port in 1..65535"
    return None


def run_endpoint(configured: str | None, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The endpoint a run uses and where it came from ("model.endpoint" or a variable's name);
    None when the SDK's default endpoint for the region applies."""
    if configured:
        return configured, "model.endpoint"
    env = os.environ if env is None else env
    for name in ENDPOINT_VARIABLES:
        value = env.get(name)
        if value:
            return value, name
    return None
