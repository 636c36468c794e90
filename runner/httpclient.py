"""Outgoing HTTP requests: the one module that imports the HTTP client library (aiohttp).

aiohttp is already installed with the Bedrock SDK (smithy-http's default transport), is asyncio
native and actively maintained; keeping it behind this module means the rest of the runner sees
only `request()`, `HttpResponse` and the typed errors below, and the library could be swapped.

Every request is bounded: a total timeout (connecting, sending, reading), a cap on the response
body (checked against Content-Length first, then while reading, after decompression, so neither a
lying server nor a compressed bomb can make it larger), no redirects (a redirect could carry an
Authorization header to another host, or downgrade https to http: a 3xx is returned as is), and
certificate verification always on. Trust is the system's (OpenSSL's default paths, which honour
SSL_CERT_FILE and SSL_CERT_DIR) plus, when given, one more CA file: a private CA, or a test's.

Errors are typed (`HttpTimeout`, `HttpTlsError`, `HttpConnectionError`, `HttpTooLarge`, all
`HttpError`) and worded without the URL's query or any header: callers put secrets there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json as jsonlib
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

# aiohttp is imported only when a request is made: importing it builds a TLS context, which reads
# SSL_CERT_FILE, and a FIFO named there would block every command that merely imports this module
# (`agent-run doctor` must report such a file, and `run` refuse it, instead of hanging).

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
_NO_BODY = object()


class HttpError(RunnerError):
    """A request that produced no response: `kind` is "timeout", "tls", "connection" or "too_large"."""

    kind = "http"


class HttpTimeout(HttpError):
    kind = "timeout"


class HttpTlsError(HttpError):
    kind = "tls"


class HttpConnectionError(HttpError):
    kind = "connection"


class HttpTooLarge(HttpError):
    kind = "too_large"

    def __init__(self, message: str, *, limit: int, size: int | None) -> None:
        super().__init__(message)
        self.limit = limit
        self.size = size  # None when the body was cut off while reading (its size is unknown)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: Mapping[str, str]  # names lowercased; repeated headers joined with ", "
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        """The body as text (its charset, else UTF-8), undecodable bytes replaced."""
        charset = "utf-8"
        content_type = self.headers.get("content-type", "")
        for part in content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, "replace")
        except LookupError:  # an unknown charset name
            return self.body.decode("utf-8", "replace")


def where(url: str) -> str:
    """`https://host:port/path` of `url`: how errors name it (no query, no user info)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if _port(parts) is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _port(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


@functools.cache
def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The verifying client context: system trust, plus `ca_file` when given. Cached: loading the
    system's certificates takes milliseconds, and a context is safely shared between requests."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def _body(json: Any, content: bytes | None, form: Mapping[str, str] | None,
          headers: dict[str, str]) -> bytes | None:
    given = [b for b in (json is not _NO_BODY, content is not None, form is not None) if b]
    if len(given) > 1:
        raise ValueError("give at most one of json, content and form")
    names = {k.lower() for k in headers}
    if json is not _NO_BODY:
        if "content-type" not in names:
            headers["Content-Type"] = "application/json"
        return jsonlib.dumps(json, ensure_ascii=False, allow_nan=False).encode("utf-8")
    if form is not None:
        if "content-type" not in names:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return urllib.parse.urlencode(form).encode("ascii")
    return content


async def request(method: str, url: str, *, headers: Mapping[str, str] | None = None,
                  json: Any = _NO_BODY, content: bytes | None = None,
                  form: Mapping[str, str] | None = None, timeout_s: float = 10.0,
                  max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                  ca_file: Path | str | None = None) -> HttpResponse:
    """Send one request and read the whole response within `timeout_s`.

    Any status is a response (the caller decides what a 404 means); no response at all raises an
    HttpError subclass. At most one body: `json` (any JSON value, sent as UTF-8 JSON), `content`
    (bytes as they are) or `form` (URL-encoded fields). Cancellation propagates.
    """
    import aiohttp

    sent_headers = dict(headers or {})
    body = _body(json, content, form, sent_headers)
    context = tls_context(None if ca_file is None else str(ca_file))
    target = where(url)
    try:
        async with asyncio.timeout(timeout_s):
            return await _send(method, url, sent_headers, body, context, max_response_bytes)
    except TimeoutError:
        raise HttpTimeout(f"no complete response from {target} within {timeout_s:g} s") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise HttpTlsError(f"TLS: the certificate of {target} was not accepted: "
                           f"{_reason(exc.certificate_error)}") from None
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        raise HttpTlsError(f"TLS handshake with {target} failed: {_reason(exc)}") from None
    except aiohttp.InvalidUrlClientError:
        raise HttpConnectionError(f"invalid URL {target}") from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HttpConnectionError(f"cannot connect to {target}: {reason}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise HttpConnectionError(f"connection to {target} failed: {type(exc).__name__}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    # aiohttp's ClientConnectorSSLError is an ssl.SSLError without `reason`: the real one is inside.
    inner = getattr(exc, "os_error", None)
    if isinstance(inner, ssl.SSLError) and inner is not exc:
        return _reason(inner)
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__


@functools.cache
def _resolver_type() -> type[AbstractResolver]:
    from aiohttp.abc import AbstractResolver, ResolveResult

    class _DaemonThreadResolver(AbstractResolver):
        """Name lookups in a daemon thread of their own, never in the loop's default executor.

        getaddrinfo() cannot be interrupted: with DNS unreachable it blocks for many seconds. aiohttp's
        default resolver runs it in the default executor, which `asyncio.run` joins at exit, so a
        stuck lookup would hold a stopping run long after its request was cancelled. A daemon thread
        is abandoned instead (its answer discarded), as runner.tools.invoke does with hung handlers.
        """

        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[list[Any]] = loop.create_future()

            def settle(ok: bool, value: Any) -> None:
                if not future.done():  # the request was abandoned meanwhile
                    (future.set_result if ok else future.set_exception)(value)

            def lookup() -> None:
                try:
                    value: Any = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
                    ok = True
                except Exception as exc:  # socket.gaierror, UnicodeError for an impossible name
                    value, ok = exc, False
                with contextlib.suppress(RuntimeError):  # the loop closed while the lookup hung
                    loop.call_soon_threadsafe(settle, ok, value)

            threading.Thread(target=lookup, name=f"resolve:{host[:40]}", daemon=True).start()
            infos = await future
            return [ResolveResult(hostname=host, host=str(address[0]), port=int(address[1]), family=af,
                                  proto=proto, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
                    for af, _, proto, _, address in infos if af in (socket.AF_INET, socket.AF_INET6)]

        async def close(self) -> None:
            pass

    return _DaemonThreadResolver


async def _send(method: str, url: str, headers: dict[str, str], body: bytes | None,
                context: ssl.SSLContext, limit: int) -> HttpResponse:
    # trust_env=False: no proxy or .netrc credentials picked up from the environment behind the
    # agent author's back. One session per request: tools are called a few times a conversation.
    import aiohttp

    connector = aiohttp.TCPConnector(ssl=context, resolver=_resolver_type()())
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session, \
            session.request(method, url, headers=headers, data=body, allow_redirects=False) as response:
        declared = response.content_length
        if declared is not None and declared > limit:
            raise HttpTooLarge(f"the response from {where(url)} is {declared} bytes; at most {limit} "
                               f"are read", limit=limit, size=declared)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise HttpTooLarge(f"the response from {where(url)} is larger than {limit} bytes",
                                   limit=limit, size=None)
            chunks.append(chunk)
        joined: dict[str, str] = {}
        for name, value in response.headers.items():
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return HttpResponse(response.status, response.reason or "", MappingProxyType(joined),
                            b"".join(chunks))
