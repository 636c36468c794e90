"""The callable of an HTTP tool: one call renders the request, sends it (retrying what may be
retried), reads what the model gets from the answer, and scrubs every secret out of the result or
the error. The request itself goes through runner.httpclient (the one module that owns aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import jinja2

from runner.config.model import HttpToolSpec, VarValue
from runner.errors import ToolError
from runner.httpclient import HttpError, HttpResponse, request
from runner.tools.http.config import IDEMPOTENT, is_loopback
from runner.tools.http.response import compile_result_template, extract_result, scrub
from runner.tools.http.templates import Context, parse_template, render_body, render_text
from runner.tools.invoke import safe_text

# Statuses that say "try again later"; anything else is an answer.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 2.0


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_FIRST_S * 2 ** attempt, BACKOFF_MAX_S))


def _check_scheme(url: str, allow_http: bool) -> None:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return
    if scheme == "http" and parts.hostname:
        if allow_http or is_loopback(parts.hostname):
            return
        raise ToolError(f"refusing plain http to {parts.hostname}: the tool allows only https "
                        f"(allow_http is not set)")
    raise ToolError("the request URL is not an http(s) URL with a host")


# `body` when the request has none (None is a body: JSON null).
_NO_BODY = object()


class _Request:
    """One call of an HTTP tool: render, send (with retries), extract, scrub."""

    def __init__(self, spec: HttpToolSpec, default_timeout_s: float, context: Context,
                 template: jinja2.Template | None) -> None:
        self.spec = spec
        self.timeout_s = spec.timeout_s or default_timeout_s
        self.context = context
        self.template = template

    def render(self) -> tuple[str, dict[str, str], Any]:
        spec, context = self.spec, self.context
        url = render_text(parse_template(spec.url), context, url=True)
        _check_scheme(url, spec.allow_http)
        given = {name.lower() for name, _ in spec.headers}
        headers = {} if "accept" in given else {"Accept": "application/json"}
        for name, value in spec.headers:
            text = render_text(parse_template(value), context)
            if any(c in text for c in "\r\n\0"):
                raise ToolError(f"header {name}: a value with a line break cannot be sent")
            headers[name] = text
        body: Any = _NO_BODY
        if spec.body is not None:
            body = render_body(json.loads(spec.body), context)
        elif spec.method in ("POST", "PUT", "PATCH"):
            body = dict(context.arguments)  # a webhook: the arguments, as the model gave them
        return url, headers, body

    async def send(self, url: str, headers: dict[str, str], body: Any) -> HttpResponse:
        spec = self.spec
        retries = spec.retries if spec.method in IDEMPOTENT else 0
        for attempt in range(retries + 1):
            try:
                kwargs: dict[str, Any] = {} if body is _NO_BODY else {"json": body}
                response = await request(spec.method, url, headers=headers, timeout_s=self.timeout_s,
                                         max_response_bytes=spec.max_response_bytes, ca_file=spec.ca_file,
                                         **kwargs)
            except HttpError as exc:
                retryable = exc.kind in ("timeout", "connection")
                if not retryable or attempt == retries:
                    tried = f" (after {attempt + 1} attempts)" if attempt else ""
                    raise ToolError(f"{spec.method} request failed{tried}: {exc}") from None
            except OSError as exc:  # the ca_file went away or became unreadable
                raise ToolError(f"cannot use ca_file {spec.ca_file}: {exc.strerror or exc}") from None
            else:
                if response.status not in RETRY_STATUSES or attempt == retries:
                    return response
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def __call__(self) -> str:
        try:
            url, headers, body = self.render()
            response = await self.send(url, headers, body)
            value = extract_result(response, self.spec.method, url, pointer=self.spec.result_pointer,
                                   template=self.template, arguments=self.context.arguments)
        except ToolError as exc:
            raise ToolError(scrub(str(exc), self.context.secrets)) from None
        except Exception as exc:  # anything unforeseen (the client refusing a header...): scrubbed too
            raise ToolError(scrub(f"{type(exc).__name__}: {safe_text(exc)}", self.context.secrets)) from None
        if self.template is not None:  # a template's text: JSON object text is passed on as such
            return scrub(value, self.context.secrets)
        payload = value if isinstance(value, dict) else {"result": value}
        return scrub(json.dumps(payload, ensure_ascii=False), self.context.secrets)



def http_function(spec: HttpToolSpec, *, variables: Mapping[str, VarValue], timeout_s: float,
                  environ: Mapping[str, str] | None = None) -> Callable[..., Coroutine[Any, Any, str]]:
    """The async callable of an HTTP tool: its keyword arguments are the tool's arguments, its
    result JSON text (or a template's text). `environ` is read at each call (default os.environ)."""
    template = compile_result_template(spec.result_template) if spec.result_template else None
    frozen_vars = dict(variables)

    async def call_http_tool(**arguments: Any) -> str:
        context = Context(arguments, frozen_vars, os.environ if environ is None else environ)
        return await _Request(spec, timeout_s, context, template)()

    call_http_tool.__name__ = f"http_{spec.method.lower()}"
    return call_http_tool
