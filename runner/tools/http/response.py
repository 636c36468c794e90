"""HTTP tool responses: what the model is told about one (a JSON pointer's value, a result
template's text, the whole JSON body, or an error), and the scrubbing of secrets out of it.

Pure functions over an `HttpResponse` (runner.httpclient, which already bounded the body to the
tool's max_response_bytes); tested without a network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jinja2

from runner.config.secrets import redact
from runner.errors import ToolError
from runner.httpclient import HttpResponse, where
from runner.protocol.sandbox import TemplateLimitError, render_bounded
from runner.protocol.templates import make_environment

# How much of an error response's body the model is told (it often says what was wrong).
ERROR_BODY_CHARS = 300

_MISSING = object()


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at the RFC 6901 JSON pointer; LookupError naming the first step that fails."""
    if pointer == "":
        return document
    current = document
    walked = ""
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        walked += "/" + raw
        if isinstance(current, dict):
            current = current.get(token, _MISSING)
        elif isinstance(current, list) and re.fullmatch(r"0|[1-9][0-9]*", token) \
                and int(token) < len(current):
            current = current[int(token)]
        else:
            current = _MISSING
        if current is _MISSING:
            raise LookupError(f"the response has nothing at {walked}")
    return current


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_BODY_CHARS else text[:ERROR_BODY_CHARS] + "..."


def status_error(method: str, url: str, response: HttpResponse) -> str:
    """What the model is told about a status outside 2xx."""
    said = _snippet(response.text())
    return (f"HTTP {response.status} {response.reason} from {method} {where(url)}".rstrip()
            + (f": {said}" if said else ""))


def parse_json(response: HttpResponse, method: str, url: str) -> Any:
    if not response.body.strip():
        return None
    try:
        return json.loads(response.text())
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise ToolError(f"the response from {method} {where(url)} is not valid JSON ({kind}): "
                        f"{_snippet(response.text())[:100]}") from None
    except RecursionError:
        raise ToolError(f"the response from {method} {where(url)} is nested too deeply") from None


def extract_result(response: HttpResponse, method: str, url: str, *, pointer: str | None,
                   template: jinja2.Template | None, arguments: Mapping[str, Any]) -> Any:
    """What the model gets from a response: a JSON pointer's value, a template's text, or the
    whole JSON body. Raises ToolError for a status outside 2xx, a body that is not JSON (unless a
    template reads it as text), a pointer that finds nothing and a template that fails."""
    if not response.ok:
        raise ToolError(status_error(method, url, response))
    if template is not None:
        try:
            document = json.loads(response.text()) if response.body.strip() else None
        except (ValueError, RecursionError):
            document = None
        context = {"status": response.status, "headers": dict(response.headers), "json": document,
                   "text": response.text(), "args": dict(arguments)}
        try:
            return render_bounded(template, context)
        except TemplateLimitError as exc:
            raise ToolError(f"the result template went over its limits: {exc}") from None
        except Exception as exc:  # the author's template can fail in any way (1/0, a bad filter)
            raise ToolError(f"the result template failed: {type(exc).__name__}: {exc}") from None
    document = parse_json(response, method, url)
    if pointer is not None:
        try:
            return resolve_pointer(document, pointer)
        except LookupError as exc:
            raise ToolError(str(exc)) from None
    return {"status": response.status} if document is None else document


def compile_result_template(text: str) -> jinja2.Template:
    """The result template in the sandbox (raises jinja2.TemplateSyntaxError)."""
    return make_environment().from_string(text)


def scrub(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with each secret value (NAME -> value) turned back into its `${env:NAME}` reference."""
    # A secret can also show up JSON-escaped (a quote or backslash in it): hide both spellings.
    escaped = {name: json.dumps(value, ensure_ascii=False)[1:-1] for name, value in secrets.items()}
    return redact(redact(text, secrets), escaped)
