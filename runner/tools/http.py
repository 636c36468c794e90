"""HTTP tools: a tool declared with `http:` instead of `handler:` is answered by one HTTP request.

    http:
      method: GET
      url: https://api.example.com/orders/{order_id}?lang={vars.language}
      headers: {Authorization: "Bearer ${env:ORDERS_TOKEN}"}
      result: {pointer: /order}

Text in `url`, `headers` and `body` is a template of three kinds of placeholder:
- `{name}`: the tool argument `name` (URL-encoded in the URL, so a value cannot add a path
  segment, a query parameter or another host); in the body, a string that is only `{name}` keeps the
  argument's JSON type;
- `{vars.NAME}`: the agent's variable (with --var overrides);
- `${env:NAME}`: an environment variable, resolved at each request and never stored, printed or
  logged (runner.config.secrets). Only the agent file's own text is searched for references: an
  argument whose value looks like `${env:AWS_SECRET_ACCESS_KEY}` is sent as those characters.
`{{` and `}}` write literal braces. Arguments may only appear after the host: the model chooses a
path and a query, never where the request goes.

Every failure (no connection, a timeout, a TLS error, a status outside 2xx, a body too large or not
JSON, a result template that fails) raises ToolError, which the tool layer sends to the model as
`{"error": ..., "tool": ...}`; messages name hosts and paths, and any secret value that still shows
up (a server echoing a header back) is turned back into its `${env:NAME}` reference, in results too.

The template parsing and result extraction are pure functions, tested without a network; the
loader checks an `http:` block with `check_http` and builds the callable with `http_function`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2

from runner.config.model import DEFAULT_MAX_RESPONSE_BYTES, AgentConfig, HttpToolSpec, VarValue
from runner.config.schema import non_json_path
from runner.config.secrets import ENV_REF, env_refs, malformed_env_refs, redact, unset_refusal
from runner.errors import ToolError
from runner.httpclient import HttpError, HttpResponse, request, where
from runner.protocol.sandbox import TemplateLimitError, render_bounded
from runner.protocol.templates import make_environment
from runner.tools.invoke import safe_text

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Repeating these cannot apply a change twice (RFC 9110, section 9.2.2), so only they may be retried.
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
# Statuses that say "try again later"; anything else is an answer.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 2.0
# How much of an error response's body the model is told (it often says what was wrong).
ERROR_BODY_CHARS = 300

# {{ / }} (literal braces), ${env:NAME}, {placeholder}, or a brace on its own (an error).
_TOKEN = re.compile(r"(?P<open>\{\{)|(?P<close>\}\})|(?P<env>\$\{env:(?P<envname>[A-Za-z_][A-Za-z0-9_]*)\})"
                    r"|\{(?P<name>[^{}]*)\}|(?P<stray>[{}])")
_ARGUMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_VAR_PREFIX = "vars."


class TemplateSyntaxError(ValueError):
    """A url/header/body template cannot be read."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    kind: Literal["argument", "var", "env"]


Piece = str | Placeholder


@dataclass(frozen=True, slots=True)
class TextTemplate:
    pieces: tuple[Piece, ...]

    def placeholders(self, kind: str) -> list[str]:
        return [p.name for p in self.pieces if isinstance(p, Placeholder) and p.kind == kind]

    @property
    def single(self) -> Placeholder | None:
        """The placeholder, when the whole text is exactly one (a typed body value)."""
        if len(self.pieces) == 1 and isinstance(self.pieces[0], Placeholder):
            return self.pieces[0]
        return None


def parse_template(text: str) -> TextTemplate:
    """The pieces of `text`; raises TemplateSyntaxError for a brace that is not a placeholder."""
    pieces: list[Piece] = []
    literal = ""
    position = 0
    for match in _TOKEN.finditer(text):
        literal += text[position:match.start()]
        position = match.end()
        if match.group("open") or match.group("close"):
            literal += match.group(0)[0]
            continue
        if match.group("stray"):
            raise TemplateSyntaxError(f"a lone {match.group('stray')!r} at character {match.start() + 1}: "
                                      f"write {{{{ or }}}} for a literal brace")
        if literal:
            pieces.append(literal)
            literal = ""
        if match.group("env"):
            pieces.append(Placeholder(match.group("envname"), "env"))
            continue
        name = match.group("name").strip()
        if name.startswith(_VAR_PREFIX) and name[len(_VAR_PREFIX):].isidentifier():
            pieces.append(Placeholder(name[len(_VAR_PREFIX):], "var"))
        elif _ARGUMENT.fullmatch(name) and not name.startswith(_VAR_PREFIX):
            pieces.append(Placeholder(name, "argument"))
        else:
            raise TemplateSyntaxError(f"{match.group(0)!r} is not a placeholder: write {{argument}}, "
                                      f"{{vars.NAME}} or ${{env:NAME}} ({{{{ and }}}} for literal braces)")
    literal += text[position:]
    if literal:
        pieces.append(literal)
    return TextTemplate(tuple(pieces))


def as_text(value: Any) -> str:
    """An argument or variable as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Context:
    """What templates are rendered with at one call; `secrets` collects the values resolved."""

    arguments: Mapping[str, Any]
    variables: Mapping[str, VarValue]
    environ: Mapping[str, str]
    secrets: dict[str, str] = field(default_factory=dict)

    def value(self, placeholder: Placeholder) -> Any:
        if placeholder.kind == "argument":
            return self.arguments.get(placeholder.name)  # an optional argument left out: empty
        if placeholder.kind == "var":
            return self.variables.get(placeholder.name)
        if placeholder.name not in self.environ:
            raise ToolError(f"environment variable {placeholder.name} is not set")
        secret = self.environ[placeholder.name]
        self.secrets[placeholder.name] = secret
        return secret


def render_text(template: TextTemplate, context: Context, *, url: bool = False) -> str:
    """The text, arguments URL-encoded when `url` (whole value: '/', '?', '#', '@' included).
    Variables and secrets are the author's: inserted as written, so `${env:BASE_URL}` can be one."""
    out = []
    for piece in template.pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        text = as_text(context.value(piece))
        if url and piece.kind == "argument":
            # Encoding leaves '.' as it is, and the URL library (then the server) resolves a path
            # segment of "." or ".." even written %2E: it would walk the path up to another endpoint.
            if text in (".", ".."):
                raise ToolError(f"argument {piece.name} cannot be {text!r} in the URL "
                                f"(it would change the path)")
            text = urllib.parse.quote(text, safe="")
        out.append(text)
    return "".join(out)


# -- body templates: any JSON value, whose strings are text templates --------------------------------

BodyPath = tuple[str | int, ...]


def body_strings(value: Any, path: BodyPath = ()) -> Iterator[tuple[BodyPath, str]]:
    """Every string inside a JSON body template (keys stay literal), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from body_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from body_strings(item, (*path, index))


def render_body(value: Any, context: Context) -> Any:
    if isinstance(value, str):
        template = parse_template(value)
        single = template.single
        if single is not None and single.kind != "env":
            return context.value(single)  # typed: a number stays a number
        return render_text(template, context)
    if isinstance(value, dict):
        return {key: render_body(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_body(item, context) for item in value]
    return value


# -- the response ---------------------------------------------------------------------------------

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


# -- checking an `http:` block (at the loader boundary) -----------------------------------------------

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


# -- the tool's callable -----------------------------------------------------------------------------


def display(spec: HttpToolSpec) -> str:
    """The `handler` string shown for an HTTP tool: the templates, never a resolved secret."""
    return f"http:{spec.method} {spec.url}"


def spec_env_names(spec: HttpToolSpec) -> list[str]:
    """Every environment variable the tool's requests reference."""
    texts = [spec.url, *(value for _, value in spec.headers)]
    if spec.body is not None:
        texts += [text for _, text in body_strings(json.loads(spec.body))]
    return list(dict.fromkeys(name for text in texts for name in env_refs(text)))


def missing_env_refusal(agent: AgentConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """Why a run of `agent` must not start (environment variables its tools need are not set), or None."""
    environ = os.environ if environ is None else environ
    missing: dict[str, list[str]] = {}
    for tool in agent.tools:
        if tool.http is not None:
            for name in spec_env_names(tool.http):
                if name not in environ:
                    missing.setdefault(name, []).append(tool.name)
    return unset_refusal(str(agent.path), missing)


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_FIRST_S * 2 ** attempt, BACKOFF_MAX_S))


def _scrub(text: str, secrets: Mapping[str, str]) -> str:
    # A secret can also show up JSON-escaped (a quote or backslash in it): hide both spellings.
    escaped = {name: json.dumps(value, ensure_ascii=False)[1:-1] for name, value in secrets.items()}
    return redact(redact(text, secrets), escaped)


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
            raise ToolError(_scrub(str(exc), self.context.secrets)) from None
        except Exception as exc:  # anything unforeseen (the client refusing a header...): scrubbed too
            raise ToolError(_scrub(f"{type(exc).__name__}: {safe_text(exc)}", self.context.secrets)) from None
        if self.template is not None:  # a template's text: JSON object text is passed on as such
            return _scrub(value, self.context.secrets)
        payload = value if isinstance(value, dict) else {"result": value}
        return _scrub(json.dumps(payload, ensure_ascii=False), self.context.secrets)


_NO_BODY = object()


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


__all__ = ["ENV_REF", "METHODS", "HttpProblem", "check_http", "display", "extract_result", "http_function",
           "missing_env_refusal", "parse_template", "render_body", "render_text", "resolve_pointer"]
