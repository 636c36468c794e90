"""Validates agent data against schemas/agent.schema.json and words each failure for people.

Every failure becomes `(path, message)`: the loader turns the path into a file line and column.
Unknown keys get one problem each, with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from datetime import date
from functools import cache
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

from runner.config.yaml import Path
from runner.schemas import AGENT, load_schema

# How deeply a tool's input_schema may nest (mappings and lists inside it). Tool arguments are
# shallow; jsonschema checks a schema against its meta-schema, and arguments against the schema,
# recursively, several frames per level. Documented in the README ("Limits").
MAX_INPUT_SCHEMA_DEPTH = 32

# The keywords that make jsonschema look up another schema by URI.
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    # A tool's schema is the agent author's, and agent files come from anyone: resolving a
    # reference must never read a URL or a file (jsonschema's default registry fetches URLs).
    # (referencing's attrs wrapper hides the constructors' arguments from mypy.)
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


# Registry for every user-written schema: its own `#...` references and the JSON Schema
# meta-schemas (which jsonschema adds itself) resolve; nothing is ever retrieved.
NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


# What validating raises for a `$ref` that does not resolve (or that NO_RETRIEVAL refused to fetch).
UnresolvableReference = referencing.exceptions.Unresolvable


def tool_schema_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A validator for a tool's `input_schema` that can never fetch a remote or file reference.

    Raises jsonschema.SchemaError when the schema itself is invalid.
    """
    cls = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, registry=NO_RETRIEVAL)


def schema_depth_path(schema: Any, limit: int = MAX_INPUT_SCHEMA_DEPTH) -> Path | None:
    """The path (inside `schema`) of the first mapping or list nested deeper than `limit`, or None.

    Iterative, so it works at any depth the YAML loader lets through.
    """
    stack: list[tuple[Path, Any]] = [((), schema)]
    while stack:
        path, value = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if len(path) >= limit:
            return path
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend(((*path, key), item) for key, item in items)
    return None


def non_json_path(value: Any) -> Path | None:
    """The path of the first value inside `value` that has no JSON form (a YAML date such as
    `2026-01-01`, `!!binary` bytes), or None. Iterative, like schema_depth_path."""
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend(((*path, key), inner) for key, inner in item.items())
        elif isinstance(item, list):
            stack.extend(((*path, i), inner) for i, inner in enumerate(item))
        elif item is not None and not isinstance(item, str | int | float):
            return path
    return None


def schema_references(schema: Any) -> Iterator[tuple[Path, str]]:
    """Every (path, URI) of a `$ref`-like keyword in `schema` (a bounded-depth schema)."""
    stack: list[tuple[Path, Any]] = [((), schema)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in _REF_KEYWORDS and isinstance(item, str):
                    yield (*path, key), item
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in enumerate(value))


def reference_problem(schema: dict[str, Any], uri: str) -> str | None:
    """Why the reference `uri` inside `schema` cannot be used, or None when it resolves locally."""
    if not uri.startswith("#"):
        return (f"{uri!r} is not a reference inside this schema: only local references ('#/$defs/NAME') "
                f"are allowed; nothing is ever fetched from the network or read from a file")
    if any(key == "$id" for path, key in _keys(schema) if path):
        return None  # nested base URIs: resolution depends on where the reference is, left to run time
    resource = referencing.Resource.from_contents(schema, default_specification=DRAFT202012)
    resolver = NO_RETRIEVAL.with_resource(resource.id() or "", resource).resolver(resource.id() or "")
    try:
        resolver.lookup(uri)
    except referencing.exceptions.Unresolvable:
        return f"{uri!r} does not point at anything in this schema"
    return None


def _keys(schema: Any) -> Iterator[tuple[Path, str]]:
    stack: list[tuple[Path, Any]] = [((), schema)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                yield path, key
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in enumerate(value))


# Paths whose enum failures the loader words itself (it knows the model's own voice list).
_SEMANTIC_ENUMS = {("voice",)}


@cache
def agent_validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema(AGENT))


def where(path: Path) -> str:
    """`tools[0].name` for ("tools", 0, "name"); "the file" for the root."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "the file"


# The schema's pattern for names and paths: no control character (tab and newline included).
NO_CONTROL_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _number(value: int | float) -> str:
    """A number for a message, shortened: an integer of thousands of digits cannot even be
    printed (Python refuses over 4300), nor should it fill the screen."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return str(value)


def describe(value: Any) -> str:
    """A value as a YAML author thinks of it: `a string ('abc')`, `null (an empty value)`."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({_number(value)})"
    if isinstance(value, str):
        shown = value if len(value) <= 30 else value[:27] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, date):
        return f"a date ({value.isoformat()}; quote it to make it text)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "a boolean (true/false)", "object": "a mapping", "array": "a list",
               "null": "null"}


def _expected(types: str | Sequence[str]) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_NAMES.get(t, t) for t in names)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_keys(err: jsonschema.ValidationError, path: Path) -> Iterator[tuple[Path, str]]:
    allowed = sorted(err.schema.get("properties", {})) if isinstance(err.schema, dict) else []
    inside = f" in {where(path)}" if path else ""
    instance: dict[str, Any] = err.instance  # type: ignore[assignment]  # checked by the caller
    for key in instance:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
            yield (*path, key), f"unknown key {key!r}{inside}{hint}"


def _misspelt(key: str, instance: dict[str, Any], allowed: Sequence[str]) -> bool:
    """Whether `instance` has an unknown key that is a likely typo of the missing `key`."""
    return any(k not in allowed and difflib.get_close_matches(k, list(allowed), n=1, cutoff=0.6) == [key]
               for k in instance)


def _one_of(err: jsonschema.ValidationError, path: Path) -> Iterator[tuple[Path, str]]:
    if path == () and isinstance(err.instance, dict):
        if "system_prompt" in err.instance and "system_prompt_file" in err.instance:
            yield ("system_prompt_file",), "use either system_prompt or system_prompt_file, not both"
        elif not any(_misspelt(k, err.instance, list(err.schema.get("properties", {})))  # type: ignore[union-attr]
                     for k in ("system_prompt", "system_prompt_file")):
            yield (), "missing the system prompt: add system_prompt (or system_prompt_file)"
        return
    if len(path) == 2 and path[0] == "tools" and isinstance(err.instance, dict):
        yield from _tool_answer(err.instance, path, list(err.schema.get("properties", {})))  # type: ignore[union-attr]
        return
    yield path, f"{where(path)}: {err.message}"


def _tool_answer(tool: dict[str, Any], path: Path, allowed: Sequence[str]) -> Iterator[tuple[Path, str]]:
    """A tool has exactly one of `handler` (a Python function) and `http` (a request)."""
    if "handler" in tool and "http" in tool:
        yield (*path, "http"), f"{where(path)}: use either handler or http, not both"
    elif not any(_misspelt(k, tool, allowed) for k in ("handler", "http")):
        yield path, (f"{where(path)}: missing what answers the tool: handler (a Python function, "
                     f"'module:function' or 'builtin:NAME') or http (a request)")


def _bound(err: jsonschema.ValidationError, path: Path) -> str:
    words = {"minimum": "at least", "maximum": "at most",
             "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than"}
    got = _number(err.instance) if isinstance(err.instance, int | float) else describe(err.instance)
    return f"{where(path)}: must be {words[str(err.validator)]} {err.validator_value}, got {got}"


def translate(err: jsonschema.ValidationError) -> Iterator[tuple[Path, str]]:
    """The located, human-worded problems behind one schema failure."""
    path: Path = tuple(err.absolute_path)
    kind = str(err.validator)
    instance: Any = err.instance
    value: Any = err.validator_value
    if kind == "additionalProperties" and isinstance(instance, dict):
        yield from _unknown_keys(err, path)
    elif kind == "required" and isinstance(instance, dict):
        # jsonschema raises one `required` error per missing key, each carrying the whole list,
        # so this words every missing key each time; schema_problems drops the repeats.
        inside = f" in {where(path)}" if path else ""
        allowed = list(err.schema.get("properties", {})) if isinstance(err.schema, dict) else []
        for key in value:
            # A misspelt key is reported once, as unknown with a "did you mean", not also as missing.
            if key not in instance and not _misspelt(key, instance, allowed):
                yield path, f"missing required key {key!r}{inside}"
    elif kind == "oneOf":
        yield from _one_of(err, path)
    elif kind == "type":
        yield path, f"{where(path)}: expected {_expected(value)}, got {describe(instance)}"
    elif kind == "enum":
        if path not in _SEMANTIC_ENUMS:
            yield path, f"{where(path)}: {instance!r} is not one of: {', '.join(str(c) for c in value)}"
    elif kind == "const" and path == ("version",):
        yield path, _version(instance, value)
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        yield path, _bound(err, path)
    elif kind in ("minProperties", "maxProperties") and path[-1:] == ("result",):
        yield path, f"{where(path)}: give exactly one of pointer and template"
    elif kind == "minLength":
        yield path, f"{where(path)}: must not be empty"
    elif kind == "pattern" and "propertyNames" in err.schema_path:
        # A propertyNames failure reports the key itself as the instance, at the mapping's path.
        yield (*path, instance), f"{where(path)}: {instance!r} is not a valid name (letters, digits, '_')"
    elif kind == "pattern" and value == NO_CONTROL_PATTERN:
        yield path, f"{where(path)}: must not contain control characters (tab, newline, ...): {instance!r}"
    elif kind == "pattern" and path[-1:] == ("handler",):
        pass  # the handler importer words a malformed handler better (runner.tools.importer)
    elif kind == "pattern" and path[-2:] in (("transfer", "account_sid"), ("transfer", "auth_token")):
        # Not repeated: it may be the secret itself, written where a reference belongs.
        example = f"${{env:TWILIO_{str(path[-1]).upper()}}}"
        yield path, (f"{where(path)}: must name an environment variable, e.g. '{example}' (credentials "
                     f"are never written in the agent file)")
    elif kind == "pattern":
        yield path, f"{where(path)}: {instance!r} does not match {value}{_hint(path)}"
    else:
        yield path, f"{where(path)}: {err.message}"


def _version(instance: Any, wanted: Any) -> str:
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        return f"version: unsupported format version {instance} (this runner reads version {wanted})"
    shown = f"write `version: {wanted}` without quotes" if str(instance).strip() == str(wanted) \
        else f"write `version: {wanted}`"
    return f"version: must be the number {wanted}, not {describe(instance)}: {shown}"


def _hint(path: Path) -> str:
    last = path[-1] if path else ""
    if path[:1] == ("tools",) and last == "name":
        return " (Nova accepts 1-64 letters, digits, '_' or '-')"
    if path[:1] == ("tools",) and last == "pointer":
        return " (a JSON pointer: '' for the whole body, or /key/0/key)"
    return ""


def schema_problems(data: Any) -> list[tuple[Path, str]]:
    """Every schema failure of `data`, worded and located by path."""
    found: dict[tuple[Path, str], None] = {}  # ordered and without repeats
    for err in agent_validator().iter_errors(data):
        found.update(dict.fromkeys(translate(err)))
    return list(found)
