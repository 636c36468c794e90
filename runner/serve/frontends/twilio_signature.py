"""`X-Twilio-Signature`: how Twilio signs its requests, and checking it. Pure functions, no I/O.

Twilio takes the full URL it requested (scheme, host, path, query), appends each POST parameter
sorted by name as `name` + `value` (no separators; repeated names sorted by value), computes
HMAC-SHA1 of that with the account's auth token, and sends it base64-encoded. A WebSocket upgrade
is signed the same way over its `wss://` URL, with no parameters.

The URL we see is not always the one Twilio called: a TLS-terminating proxy turns `https` into
`http`, and Twilio may add or drop the default port. `candidate_urls` lists those variants; the
HMAC still proves the request came from the token's holder for this host, path and parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

_SWAP = {"http": "https", "https": "http", "ws": "wss", "wss": "ws"}
_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The signature Twilio sends for a request to `url` with POST `params`."""
    by_name: dict[str, set[str]] = {}
    for name, value in params:
        by_name.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(by_name) for value in sorted(by_name[name]))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def candidate_urls(url: str) -> list[str]:
    """`url` as Twilio may have called it: either scheme of the pair, with and without the port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    out: list[str] = []
    for scheme in (parts.scheme, _SWAP.get(parts.scheme, parts.scheme)):
        port = parts.port or _DEFAULT_PORT.get(scheme)
        netlocs = [host, f"{host}:{port}"] if port == _DEFAULT_PORT.get(scheme) else [f"{host}:{port}"]
        for netloc in netlocs:
            candidate = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
            if candidate not in out:
                out.append(candidate)
    return out


def signature_valid(auth_token: str, signature: str | None, urls: Sequence[str],
                    params: Iterable[tuple[str, str]] = ()) -> bool:
    """Whether `signature` is Twilio's for one of `urls` with `params` (compared in constant time)."""
    if not signature:
        return False
    given = signature.encode()
    pairs = list(params)
    ok = False
    for url in urls:
        # No early exit: every candidate is compared, so timing says nothing about which matched.
        ok |= hmac.compare_digest(compute_signature(auth_token, url, pairs).encode(), given)
    return ok
