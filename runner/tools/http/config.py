"""Checking an `http:` block at the loader boundary: `check_http` reports every problem (with its
place inside the block) and builds the frozen HttpToolSpec; `env_ref_paths` lists the block's
`${env:NAME}` references by place, so the loader can record where each secret is named.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2

from runner.config.model import DEFAULT_MAX_RESPONSE_BYTES, HttpToolSpec, VarValue
from runner.config.schema import non_json_path
from runner.config.secrets import env_refs, malformed_env_refs
from runner.tools.http.response import compile_result_template
from runner.tools.http.templates import (
    Placeholder,
    TemplateSyntaxError,
    TextTemplate,
    body_strings,
    parse_template,
)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Repeating these cannot apply a change twice (RFC 9110, section 9.2.2), so only they may be retried.
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class HttpProblem:
    path: tuple[str | int, ...]  # inside the `http:` mapping
    message: str
    severity: Severity = "error"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_problems(template: TextTemplate, allow_http: bool) -> Iterator[str]:
    # The text before the first argument (references standing in as "R") must already have
    # reached the path: a placeholder in the host would let the model choose where to send.
    head = ""
    for piece in template.pieces:
        if isinstance(piece, Placeholder) and piece.kind == "argument":
            rest = head.split("://", 1)[1] if "://" in head else head
            if not any(c in rest for c in "/?#"):
                yield (f"{{{piece.name}}} is in the scheme or host: arguments may only be in the path "
                       f"or query (the model must not choose where the request goes)")
            break
        head += piece if isinstance(piece, str) else "R"
    first = template.pieces[0] if template.pieces else ""
    if not isinstance(first, str):
        return  # starts with a variable or an environment reference: checked at each request
    if not re.match(r"https?://", first, re.IGNORECASE):
        yield "the URL must start with https:// (or http://, see allow_http)"
        return
    plain = re.match(r"http://[^/?#]*", first, re.IGNORECASE)
    # Only a host written out in full is judged here; one made of references is judged per request.
    if plain is not None and not allow_http and (plain.end() < len(first) or len(template.pieces) == 1):
        host = urllib.parse.urlsplit(plain.group(0)).hostname
        if not is_loopback(host):
            yield (f"plain http:// to {host or 'this host'} is refused (requests and secrets would travel "
                   f"unencrypted): use https://, or set 'allow_http: true' on this tool; loopback hosts "
                   f"(127.0.0.1, localhost) are always allowed")


def _template_problems(path: tuple[str | int, ...], text: str, arguments: set[str] | None,
                       variables: Mapping[str, VarValue], environ: Mapping[str, str]
                       ) -> tuple[TextTemplate | None, list[HttpProblem]]:
    problems = [HttpProblem(path, f"{bad!r} is not a valid environment reference: write ${{env:NAME}} "
                                  f"(NAME: letters, digits and '_', not starting with a digit)")
                for bad in malformed_env_refs(text)]
    if problems:
        return None, problems
    try:
        template = parse_template(text)
    except TemplateSyntaxError as exc:
        return None, [HttpProblem(path, str(exc))]
    for name in template.placeholders("argument"):
        if arguments is not None and name not in arguments:
            known = ", ".join(sorted(arguments)) or "none"
            problems.append(HttpProblem(path, f"{{{name}}} is not an argument of this tool (input_schema "
                                              f"properties: {known}); an agent variable is {{vars.NAME}}"))
    for name in template.placeholders("var"):
        if name not in variables:
            declared = ", ".join(sorted(variables)) or "none"
            problems.append(HttpProblem(path, f"{{vars.{name}}}: no such variable in vars "
                                              f"(declared: {declared})"))
    for name in template.placeholders("env"):
        if name not in environ:
            problems.append(HttpProblem(path, f"environment variable {name} is not set: a run of this agent "
                                              f"refuses to start without it", "warning"))
    return template, problems


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arguments(input_schema: Any) -> set[str] | None:
    if not isinstance(input_schema, dict):
        return None  # reported by the input_schema check
    properties = input_schema.get("properties")
    return set(properties) if isinstance(properties, dict) else set()


def check_http(raw: Mapping[str, Any], *, input_schema: Any, variables: Mapping[str, VarValue],
               folder: Path, inside_folder: Callable[[str, Path], bool],
               environ: Mapping[str, str] | None = None) -> tuple[HttpToolSpec | None, list[HttpProblem]]:
    """Check an `http:` block the schema accepted in shape; the spec when it has no error.

    `inside_folder(text, path)` says whether `ca_file` may be used (it reports the problem itself).
    """
    environ = os.environ if environ is None else environ
    problems: list[HttpProblem] = []
    method = str(raw.get("method", "GET")).upper()
    arguments = _arguments(input_schema)
    url = raw.get("url")
    if isinstance(url, str):
        template, found = _template_problems(("url",), url, arguments, variables, environ)
        problems += found
        if template is not None:
            allow_http = raw.get("allow_http") is True
            problems += [HttpProblem(("url",), m) for m in _url_problems(template, allow_http)]
    headers: dict[str, Any] = _mapping(raw.get("headers"))
    for name, value in headers.items():
        if isinstance(value, str):
            problems += _template_problems(("headers", name), value, arguments, variables, environ)[1]
    body = raw.get("body")
    if "body" in raw:
        not_json = non_json_path(body)
        if not_json is not None:  # it is sent as JSON: a YAML date or !!binary has no JSON form
            problems.append(HttpProblem(("body", *not_json), "this value has no JSON form; quote it to make "
                                                             "it text"))
            body = None
        if method not in ("POST", "PUT", "PATCH", "DELETE"):
            problems.append(HttpProblem(("body",), f"a {method} request has no body (body is for POST, PUT, "
                                                   f"PATCH and DELETE)"))
        for where_, text in body_strings(body):
            problems += _template_problems(("body", *where_), text, arguments, variables, environ)[1]
    retries = raw.get("retries", 0)
    if isinstance(retries, int) and retries > 0 and method not in IDEMPOTENT:
        problems.append(HttpProblem(("retries",), f"retries are only for idempotent methods "
                                                  f"({', '.join(IDEMPOTENT)}): a {method} may have been "
                                                  f"carried out even when its answer was lost"))
    result: dict[str, Any] = _mapping(raw.get("result"))
    if isinstance(result.get("template"), str):
        try:
            compile_result_template(result["template"])
        except jinja2.TemplateSyntaxError as exc:
            problems.append(HttpProblem(("result", "template"), f"template syntax error (line {exc.lineno}): "
                                                                 f"{exc.message}"))
        except Exception as exc:  # RecursionError: an expression nested thousands deep
            problems.append(HttpProblem(("result", "template"), f"template cannot be compiled: "
                                                                 f"{type(exc).__name__}"))
    ca_file, ca_ok = _ca_file(raw.get("ca_file"), folder, inside_folder, problems)
    if any(p.severity == "error" for p in problems) or not ca_ok or not isinstance(url, str):
        return None, problems
    timeout = raw.get("timeout_s")
    max_bytes = raw.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    spec = HttpToolSpec(
        method=method, url=url,
        headers=tuple((str(k), v) for k, v in headers.items() if isinstance(v, str)),
        body=json.dumps(body, ensure_ascii=False) if "body" in raw else None,
        timeout_s=float(timeout) if isinstance(timeout, int | float) else None,
        retries=int(retries) if isinstance(retries, int) else 0,
        allow_http=raw.get("allow_http") is True, ca_file=ca_file,
        result_pointer=result.get("pointer") if isinstance(result.get("pointer"), str) else None,
        result_template=result.get("template") if isinstance(result.get("template"), str) else None,
        max_response_bytes=int(max_bytes) if isinstance(max_bytes, int | float)
        else DEFAULT_MAX_RESPONSE_BYTES)
    return spec, problems


def _ca_file(value: Any, folder: Path, inside_folder: Callable[[str, Path], bool],
             problems: list[HttpProblem]) -> tuple[Path | None, bool]:
    """(the CA file, whether it is usable); `inside_folder` reports a file outside the folder."""
    if not isinstance(value, str):
        return None, True
    path = folder / value
    if not inside_folder(value, path):
        return None, False
    try:
        if path.is_file():
            return path.resolve(), True
        problems.append(HttpProblem(("ca_file",), f"ca_file {value!r} is not a file (resolved to {path})"))
    except OSError as exc:
        problems.append(HttpProblem(("ca_file",), f"ca_file {value!r}: {exc.strerror or exc}"))
    return None, False


def display(spec: HttpToolSpec) -> str:
    """The `handler` string shown for an HTTP tool: the templates, never a resolved secret."""
    return f"http:{spec.method} {spec.url}"


def env_ref_paths(spec: HttpToolSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Every `${env:NAME}` the tool's requests reference: (its place inside `http:`, NAME), in file order."""
    texts: list[tuple[tuple[str | int, ...], str]] = [(("url",), spec.url)]
    texts += [(("headers", name), value) for name, value in spec.headers]
    if spec.body is not None:
        texts += [(("body", *path), text) for path, text in body_strings(json.loads(spec.body))]
    return [(path, name) for path, text in texts for name in env_refs(text)]
