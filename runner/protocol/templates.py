"""Renders Nova Sonic input events from Jinja templates.

Every input event the runner sends comes from a `*.json.j2` template (built-in, or overridden by
an agent's `templates:` folder). Rendering is sandboxed with undefined variables as errors, values
go through `tojson`, and the text is parsed as JSON and validated against that event's schema
before it can reach the wire, so a broken override fails here with its file and line, not as an
opaque ValidationException from the service.

This module does no file I/O: template sources arrive as strings (see `runner.config.templates`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
import jinja2.nodes
import jsonschema

from runner.errors import ConfigError
from runner.protocol.sandbox import BoundedSandbox, render_bounded
from runner.schemas import INPUT_EVENT, load_schema

# Template name -> the Nova event it renders.
TEMPLATE_EVENTS: dict[str, str] = {
    "sessionStart": "sessionStart",
    "promptStart": "promptStart",
    "contentStartText": "contentStart",
    "contentStartAudio": "contentStart",
    "contentStartTool": "contentStart",
    "textInput": "textInput",
    "audioInput": "audioInput",
    "toolResult": "toolResult",
    "contentEnd": "contentEnd",
    "promptEnd": "promptEnd",
    "sessionEnd": "sessionEnd",
}
TEMPLATE_SUFFIX = ".json.j2"

# A representative context for each template, used to check overrides before a session starts.
SAMPLE_CONTEXTS: dict[str, dict[str, Any]] = {
    "sessionStart": {
        "inference": {"max_tokens": 1024, "top_p": 0.9, "temperature": 0.7},
        "endpointing_sensitivity": "MEDIUM",
    },
    "promptStart": {
        "prompt_name": "prompt-1",
        "output_sample_rate": 24000,
        "voice_id": "matthew",
        "tools": [{"name": "sampleTool", "description": "A sample tool.",
                   "input_schema": {"type": "object", "properties": {}}}],
    },
    "contentStartText": {"prompt_name": "prompt-1", "content_name": "c-1", "role": "SYSTEM",
                         "interactive": False},
    "contentStartAudio": {"prompt_name": "prompt-1", "content_name": "c-2", "input_sample_rate": 16000},
    "contentStartTool": {"prompt_name": "prompt-1", "content_name": "c-3", "tool_use_id": "t-1"},
    "textInput": {"prompt_name": "prompt-1", "content_name": "c-1", "content": "Hello \"quoted\" <b>"},
    "audioInput": {"prompt_name": "prompt-1", "content_name": "c-2", "content": "AAAA"},
    "toolResult": {"prompt_name": "prompt-1", "content_name": "c-3", "content": "{\"ok\": true}"},
    "contentEnd": {"prompt_name": "prompt-1", "content_name": "c-1"},
    "promptEnd": {"prompt_name": "prompt-1"},
    "sessionEnd": {},
}


# The event-stream limit on one message's payload (bedrock-sdk.md §3.3; the SDK's
# smithy_aws_event_stream enforces it when it frames an event). Each payload we produce is wrapped
# as {"bytes":"<base64>"} in an inner message that is the payload of the signed outer message, so
# the largest Nova JSON that fits is 3/4 of the limit, less the framing (~200 bytes; 1 KiB kept).
EVENT_STREAM_PAYLOAD_LIMIT = 16 * 1024 * 1024
MAX_EVENT_BYTES = (EVENT_STREAM_PAYLOAD_LIMIT // 4) * 3 - 1024


class EventTemplateError(ConfigError):
    """A template failed to render into a valid event. `filename`/`line` locate the cause."""

    def __init__(self, message: str, *, filename: str, line: int) -> None:
        super().__init__(f"{filename}:{line}: {message}")
        self.filename = filename
        self.line = line
        self.detail = message


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """A template's text and the file it came from (for error messages)."""

    text: str
    filename: str


def make_environment() -> BoundedSandbox:
    """The sandbox every template (event or system prompt) renders in; render with `render_bounded`."""
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    # Jinja's own tojson is HTML-safe (escapes <, >, &, ') and sorts keys; these templates make
    # JSON, not HTML, and a tool's schema should reach Nova as the author wrote it.
    env.add_filter("tojson", _tojson)
    return env


def _tojson(value: Any) -> str:
    text: str = json.dumps(value, ensure_ascii=False)
    return text


@cache
def _event_validator(event: str) -> jsonschema.protocols.Validator:
    schema = load_schema(INPUT_EVENT)
    envelope = {
        "type": "object",
        "required": ["event"],
        "additionalProperties": False,
        "properties": {
            "event": {
                "type": "object",
                "required": [event],
                "additionalProperties": False,
                "properties": {event: {"$ref": f"#/$defs/{event}"}},
            }
        },
        "$defs": schema["$defs"],
    }
    cls = jsonschema.validators.validator_for(schema)
    return cls(envelope)


def validate_event(event_name: str, payload: Any) -> list[str]:
    """Every way `payload` is not a valid `event_name` input event (empty when valid)."""
    messages = []
    for err in sorted(_event_validator(event_name).iter_errors(payload), key=lambda e: e.path):
        where = ".".join(str(p) for p in err.absolute_path) or "(root)"
        messages.append(f"{where}: {err.message}")
    return messages


class EventTemplates:
    """The compiled set of event templates for one agent."""

    def __init__(self, sources: Mapping[str, TemplateSource]) -> None:
        missing = sorted(set(TEMPLATE_EVENTS) - set(sources))
        if missing:
            raise ConfigError(f"missing event templates: {', '.join(missing)}")
        self._sources = dict(sources)
        self._env = make_environment()
        self._compiled: dict[str, jinja2.Template] = {}
        for name, src in self._sources.items():
            try:
                self._compiled[name] = self._env.from_string(src.text)
            except jinja2.TemplateSyntaxError as exc:
                raise EventTemplateError(
                    f"template syntax error: {exc.message}", filename=src.filename,
                    line=exc.lineno or 1) from None
            except Exception as exc:  # e.g. RecursionError: expressions nested thousands deep
                raise EventTemplateError(
                    f"template cannot be compiled: {type(exc).__name__}: {exc}", filename=src.filename,
                    line=1) from None
        self._audio_splittable = _content_spliced_once(self._env, self._sources["audioInput"].text)

    def source(self, name: str) -> TemplateSource:
        return self._sources[name]

    def blame(self, service_message: str) -> str | None:
        """Which override templates to suspect when the service refused an event (see `blame_overrides`)."""
        return blame_overrides(service_message, self._sources)

    def render(self, name: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """Render template `name` with `context` into a validated event dict.

        Raises EventTemplateError (with the template's file and line) when the template cannot
        render, does not produce JSON, or produces an event Nova Sonic would reject.
        """
        src = self._sources[name]
        try:
            text = render_bounded(self._compiled[name], context)
        except jinja2.TemplateError as exc:
            raise EventTemplateError(
                f"template error: {exc}", filename=src.filename,
                line=_jinja_error_line(exc, src.filename)) from None
        except Exception as exc:  # an override can fail in any way (1/0, range too big, ...)
            raise EventTemplateError(
                f"template error: {type(exc).__name__}: {exc}", filename=src.filename,
                line=_jinja_error_line(exc, src.filename)) from None
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            bad_line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
            raise EventTemplateError(
                f"rendered {name} is not JSON: {exc.msg} (rendered line {exc.lineno}: "
                f"{bad_line.strip()[:60]!r})",
                filename=src.filename, line=_locate(src.text, bad_line.strip())) from None
        except (RecursionError, ValueError) as exc:  # nested too deep, or an int over 4,300 digits
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise EventTemplateError(f"rendered {name} is not usable JSON: {reason}",
                                     filename=src.filename, line=1) from None
        event = TEMPLATE_EVENTS[name]
        problems = _event_validator(event).iter_errors(payload)
        first = next(iter(sorted(problems, key=lambda e: list(e.absolute_path))), None)
        if first is not None:
            where = ".".join(str(p) for p in first.absolute_path) or "(root)"
            needle = _error_key(first)
            raise EventTemplateError(
                f"rendered {name} is not a valid {event} event: at {where}: {first.message}",
                filename=src.filename, line=_locate(src.text, f'"{needle}"' if needle else "")) from None
        result: dict[str, Any] = payload
        return result

    def render_bytes(self, name: str, context: Mapping[str, Any]) -> bytes:
        """`render`, serialised compactly as UTF-8 JSON (what goes on the wire)."""
        text = json.dumps(self.render(name, context), separators=(",", ":"), ensure_ascii=False)
        try:
            return text.encode()
        except UnicodeEncodeError as exc:  # `"\ud800" | tojson` is valid JSON with no UTF-8 form
            src, code = self._sources[name], ord(exc.object[exc.start])
            raise EventTemplateError(
                f"rendered {name} holds a lone surrogate U+{code:04X}, which has no UTF-8 form",
                filename=src.filename, line=_locate(src.text.lower(), f"\\u{code:04x}")) from None

    def audio_input_encoder(self, prompt_name: str, content_name: str) -> AudioInputEncoder | None:
        """The audio fast path for one audio block, or None when the template path must be used.

        An `audioInput` is rendered for every 32 ms of microphone audio; through Jinja and the
        schema that is most of the runner's own CPU. The template is instead rendered and checked
        once here (per stream), and each event is then the fixed bytes around its base64 content.
        This is exact only when the content is spliced in verbatim, once, and nothing else in the
        template depends on it, which `_content_spliced_once` proves from the template's syntax
        tree; two renders with different contents then confirm the split. Otherwise (or when the
        sample render fails, so the template path reports the error) None.
        """
        if not self._audio_splittable:
            return None
        context = {"prompt_name": prompt_name, "content_name": content_name}
        try:
            first = self.render_bytes("audioInput", {**context, "content": _SPLIT_PROBES[0]})
            prefix, found, suffix = first.partition(_SPLIT_PROBES[0].encode("ascii"))
            if not found or _SPLIT_PROBES[0].encode("ascii") in suffix:
                return None
            encoder = AudioInputEncoder(prefix, suffix)
            for probe in _SPLIT_PROBES[1:]:
                if self.render_bytes("audioInput", {**context, "content": probe}) != \
                        encoder.encode(probe.encode("ascii")):
                    return None
        except EventTemplateError:
            return None
        return encoder

    def check(self) -> list[EventTemplateError]:
        """Render every template with its sample context; return every failure."""
        failures = []
        for name in TEMPLATE_EVENTS:
            try:
                size = len(self.render_bytes(name, SAMPLE_CONTEXTS[name]))
            except EventTemplateError as exc:
                failures.append(exc)
                continue
            if size > MAX_EVENT_BYTES:  # the session would refuse every such event (session.py)
                failures.append(EventTemplateError(
                    f"renders a {TEMPLATE_EVENTS[name]} event of {size} bytes from the sample values, more "
                    f"than one event can carry ({MAX_EVENT_BYTES} bytes)",
                    filename=self._sources[name].filename, line=1))
        return failures


# Base64 contents that differ in length and alphabet (padding, '+' and '/' included), for proving
# that an audioInput template splits around its content.
_SPLIT_PROBES = (
    base64.b64encode(b"agent-run audio probe \x00\xfb\xff").decode("ascii"),
    base64.b64encode(b"\xfb\xef\xbe second probe").decode("ascii"),
    "",
)
# Larger contents take the template path, whose output limit (MAX_RENDER_CHARS) they may reach.
FAST_PATH_MAX_CONTENT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AudioInputEncoder:
    """The bytes of one audio block's `audioInput` event before and after its base64 content."""

    prefix: bytes
    suffix: bytes

    def encode(self, content: bytes) -> bytes:
        """The event for `content` (base64, ASCII), byte for byte what the template path makes."""
        return b"".join((self.prefix, content, self.suffix))


def _content_spliced_once(env: jinja2.Environment, text: str) -> bool:
    """True when `content` appears exactly once in the template, as `{{ content | tojson }}` output
    directly (under `if`s at most), so the rendered event is fixed text around the content's JSON
    string. Loops, blocks, filters, macros and other uses of the name could transform or repeat it."""
    try:
        tree = env.parse(text)
    except Exception:  # the compile step in __init__ reports the error
        return False
    uses = [path for name, path in _name_paths(tree, []) if name == "content"]
    if len(uses) != 1:
        return False
    *outer, output, flt = uses[0]
    if not (isinstance(flt, jinja2.nodes.Filter) and flt.name == "tojson" and not flt.args
            and not flt.kwargs and flt.dyn_args is None and flt.dyn_kwargs is None
            and isinstance(output, jinja2.nodes.Output)):
        return False
    return all(isinstance(node, jinja2.nodes.Template | jinja2.nodes.If) for node in outer)


def _name_paths(node: jinja2.nodes.Node,
                path: list[jinja2.nodes.Node]) -> Iterator[tuple[str, list[jinja2.nodes.Node]]]:
    """Every Name node (any context: load, store, param) and the nodes above it, from the root."""
    if isinstance(node, jinja2.nodes.Name):
        yield node.name, path
    path = [*path, node]
    for child in node.iter_child_nodes():
        yield from _name_paths(child, path)


BUILTIN_PREFIX = "<built-in>/"
# How the service (and the emulator) name the input event a ValidationException is about.
_REFUSED_EVENT = re.compile(r"\(input event #\d+: (\w+)\)")


def blame_overrides(service_message: str, sources: Mapping[str, TemplateSource]) -> str | None:
    """A sentence naming the override template(s) behind an event the service refused, or None.

    `check` validates overrides against the event schemas, but the service checks more (a voice id,
    a value's range); its ValidationException then says nothing of our files. When the message
    names the event ("(input event #3: contentStart)"), blame the overrides that render that event
    (several templates render contentStart); without a name, list every override as the likely
    cause. None when no override is in use, or none renders the named event.
    """
    overridden = {name: src.filename for name, src in sources.items()
                  if not src.filename.startswith(BUILTIN_PREFIX)}
    if not overridden:
        return None
    named = _REFUSED_EVENT.search(service_message)
    if named is not None:
        event = named.group(1)
        files = [file for name, file in overridden.items() if TEMPLATE_EVENTS.get(name) == event]
        if not files:
            return None
        which = "the override" if len(files) == 1 else "one of the overrides"
        return f"the refused {event} event was rendered by {which} {', '.join(files)}"
    return f"this agent overrides event templates, the likely cause: {', '.join(overridden.values())}"


def _jinja_error_line(exc: Exception, filename: str) -> int:
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    # Runtime errors (e.g. undefined variables) carry the line only in the traceback.
    tb = exc.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _error_key(err: jsonschema.ValidationError) -> str:
    """The JSON key most likely written wrongly in the template, for locating the error."""
    if err.validator == "additionalProperties":
        found = re.findall(r"'([^']+)' was unexpected", err.message)
        if found:
            return str(found[0])
    for part in reversed(list(err.absolute_path)):
        if isinstance(part, str):
            return part
    return ""


def _locate(template_text: str, needle: str) -> int:
    """1-based line of the first template line containing `needle` (1 when not found)."""
    if needle:
        for number, line in enumerate(template_text.splitlines(), start=1):
            if needle in line:
                return number
    return 1
