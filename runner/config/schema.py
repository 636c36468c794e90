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
from jsonschema import Draft202012Validator

from runner.config.yaml import Path
from runner.schemas import AGENT, load_schema

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


def describe(value: Any) -> str:
    """A value as a YAML author thinks of it: `a string ('abc')`, `null (an empty value)`."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
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
    yield path, f"{where(path)}: {err.message}"


def _bound(err: jsonschema.ValidationError, path: Path) -> str:
    words = {"minimum": "at least", "maximum": "at most",
             "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than"}
    return f"{where(path)}: must be {words[str(err.validator)]} {err.validator_value}, got {err.instance}"


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
    elif kind == "minLength":
        yield path, f"{where(path)}: must not be empty"
    elif kind == "pattern" and "propertyNames" in err.schema_path:
        # A propertyNames failure reports the key itself as the instance, at the mapping's path.
        yield (*path, instance), f"{where(path)}: {instance!r} is not a valid name (letters, digits, '_')"
    elif kind == "pattern" and path[-1:] == ("handler",):
        pass  # the handler importer words a malformed handler better (runner.tools.importer)
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
    return ""


def schema_problems(data: Any) -> list[tuple[Path, str]]:
    """Every schema failure of `data`, worded and located by path."""
    found: dict[tuple[Path, str], None] = {}  # ordered and without repeats
    for err in agent_validator().iter_errors(data):
        found.update(dict.fromkeys(translate(err)))
    return list(found)
