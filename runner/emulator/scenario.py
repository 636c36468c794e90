"""Scenario files: the scripted model the emulator plays (schemas/scenario.schema.json).

A scenario is data: turns of `say` (Jinja text) and `tool` items, optional VAD/pacing settings
and optional faults. `check_scenario` reads a file the way the agent loader reads agent files
(bounded read, UTF-8, YAML with positions), checks it against the schema and compiles every `say`
template, and reports every problem at once as FILE:LINE:COL, unknown keys with a "did you mean".
So a broken scenario fails at start, never in the middle of a session. A new turn key (such as a
`when:` condition) is a schema property, a `Turn` field and a line in `_turn`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jsonschema

from runner.config import yaml
from runner.config.report import Problem, shown
from runner.config.schema import did_you_mean, non_json_path, translate, where
from runner.errors import ConfigError
from runner.files import MAX_AGENT_FILE_BYTES, UnreadableFileError, read_user_file
from runner.protocol.templates import make_environment
from runner.schemas import SCENARIO, load_schema


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    input: Mapping[str, Any]

    @property
    def content(self) -> str:
        """The arguments as toolUse.content carries them: a JSON string."""
        return json.dumps(self.input, ensure_ascii=False)


Item = Say | ToolCall


@dataclass(frozen=True, slots=True)
class Turn:
    items: tuple[Item, ...]
    # What the model "heard"; None: the emulator describes the audio it got.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    speech_threshold_dbfs: float = -40.0
    speech_start_ms: int = 100
    speech_end_ms: int = 600
    # Nova streams audio faster than real time; 4x lets a barge-in still drop a tail.
    speed: float = 4.0
    audio_chunk_ms: int = 100


@dataclass(frozen=True, slots=True)
class Faults:
    reset_after_events: int | None = None
    throttle_connects: int = 0
    stream_error_at_turn: int | None = None
    invalid_bytes_at_turn: int | None = None
    time_limit_s: float | None = None
    # RST_STREAM right after the first toolUse: the tool's result then has no stream to go to.
    reset_after_tool_use: bool = False
    # Call tools the session did not declare (a misbehaving model; the service never does).
    call_undeclared_tools: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    turns: tuple[Turn, ...] = ()
    settings: Settings = field(default_factory=Settings)
    faults: Faults = field(default_factory=Faults)
    source: str = "<scenario>"


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and compile a scenario YAML file. Raises ConfigError listing every problem."""
    scenario, problems = check_scenario(path)
    if scenario is None:
        listing = "\n".join(p.format() for p in problems)
        raise ConfigError(f"{shown(str(path))}: {len(problems)} error(s) in the scenario file:\n{listing}",
                          tuple(problems))
    return scenario


def check_scenario(path: str | Path) -> tuple[Scenario | None, list[Problem]]:
    """The scenario at `path` (None when it has errors) and every problem found, located."""
    label = str(path)
    try:
        raw = read_user_file(Path(path), limit=MAX_AGENT_FILE_BYTES, what="a scenario file")
    except UnreadableFileError as exc:
        return None, [Problem(label, 1, 1, "error", exc.reason)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(label, line, col, "error",
                              f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded)")]
    try:
        doc = yaml.load(text)
    except yaml.YamlSyntaxError as exc:
        return None, [Problem(label, exc.mark.line, exc.mark.col, "error", exc.message)]
    problems = [Problem(label, mark.line, mark.col, "error", message) for mark, message in doc.issues]
    return _build(doc, label, problems)


def parse_scenario(data: Any, *, source: str = "<scenario>") -> Scenario:
    """Build a Scenario from already loaded data (no positions: problems are at 1:1, named by
    their path). Raises ConfigError listing every problem."""
    scenario, problems = _build(yaml.YamlDocument(data, {}), source, [])
    if scenario is None:
        listing = "\n".join(p.format() for p in problems)
        raise ConfigError(f"{source}: {len(problems)} error(s) in the scenario:\n{listing}", tuple(problems))
    return scenario


def _build(doc: yaml.YamlDocument, label: str, problems: list[Problem]
           ) -> tuple[Scenario | None, list[Problem]]:
    data = {} if doc.data is None else doc.data  # an empty file: the default behaviour
    for path, message in _schema_problems(data):
        mark = doc.locate(path)
        problems.append(Problem(label, mark.line, mark.col, "error", message))
    if isinstance(data, dict):
        problems.extend(_template_problems(doc, data, label))
        problems.extend(_input_problems(doc, data, label))
    if problems:
        return None, sorted(set(problems))
    turns = tuple(_turn(t) for t in data.get("turns", []))
    return Scenario(turns=turns, settings=Settings(**_ints(Settings, data.get("settings", {}))),
                    faults=Faults(**_ints(Faults, data.get("faults", {}))), source=label), []


def _ints(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with the integer fields of dataclass `cls` made ints (JSON Schema counts 3.0 as an
    integer, and a float turn number or millisecond count would break the arithmetic that uses it)."""
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    return {key: int(value) if isinstance(value, float) and "int" in str(fields.get(key, "")) else value
            for key, value in values.items()}


def _schema_problems(data: Any) -> Iterator[tuple[yaml.Path, str]]:
    if not isinstance(data, dict):
        yield (), "a scenario file must be a mapping of keys (turns, settings, faults, description)"
        return
    for err in _validator().iter_errors(data):
        if str(err.validator) == "oneOf" and isinstance(err.instance, dict):
            yield from _item_kind(err.instance, tuple(err.absolute_path))
        elif str(err.validator) == "minItems" and tuple(err.absolute_path)[-1:] == ("assistant",):
            yield tuple(err.absolute_path), f"{where(tuple(err.absolute_path))}: must not be empty " \
                                             "(add a `say` or `tool` item)"
        elif str(err.validator) == "dependentRequired":
            path = tuple(err.absolute_path)
            yield (*path, "input"), f"{where(path)}: `input` goes with `tool` (the tool's arguments)"
        else:
            yield from translate(err)


_ITEM_KEYS = ("say", "tool", "input")


def _item_kind(item: Mapping[str, Any], path: yaml.Path) -> Iterator[tuple[yaml.Path, str]]:
    """An assistant item that is neither a `say` nor a `tool` (or both)."""
    if "say" in item and "tool" in item:
        yield (*path, "tool"), f"{where(path)}: an item is either `say` or `tool`, not both"
    elif not any(did_you_mean(key, _ITEM_KEYS) for key in item if key not in _ITEM_KEYS):
        # (A misspelt `sayy:` is already reported as an unknown key with its suggestion.)
        yield path, f"{where(path)}: an assistant item needs `say` (text to speak) or `tool` (a tool call)"


def _template_problems(doc: yaml.YamlDocument, data: dict[str, Any], label: str) -> Iterator[Problem]:
    turns = data.get("turns")
    for i, turn in enumerate(turns if isinstance(turns, list) else []):
        items = turn.get("assistant") if isinstance(turn, dict) else None
        for j, item in enumerate(items if isinstance(items, list) else []):
            text = item.get("say") if isinstance(item, dict) else None
            if not isinstance(text, str):
                continue
            try:
                _compile(text)
            except jinja2.TemplateSyntaxError as exc:
                path: yaml.Path = ("turns", i, "assistant", j, "say")
                line, col = _template_mark(doc, path, exc.lineno or 1)
                yield Problem(label, line, col, "error",
                              f"{where(path)}: template syntax error: {exc.message}")
            except Exception as exc:  # Jinja's parser fails in other ways too
                # RecursionError: it recurses once per level (`{{ [[[[...`); ValueError: an
                # integer literal of 4300+ digits.
                path = ("turns", i, "assistant", j, "say")
                line, col = _template_mark(doc, path, 1)
                why = "expressions nested too deeply" if isinstance(exc, RecursionError) \
                    else f"{type(exc).__name__}: {exc}"
                yield Problem(label, line, col, "error", f"{where(path)}: template cannot be compiled: {why}")


def _input_problems(doc: yaml.YamlDocument, data: dict[str, Any], label: str) -> Iterator[Problem]:
    """Tool arguments are sent as JSON: a YAML date (`2026-01-01`) or `!!binary` value has no JSON form."""
    turns = data.get("turns")
    for i, turn in enumerate(turns if isinstance(turns, list) else []):
        items = turn.get("assistant") if isinstance(turn, dict) else None
        for j, item in enumerate(items if isinstance(items, list) else []):
            arguments = item.get("input") if isinstance(item, dict) else None
            inner = non_json_path(arguments) if isinstance(arguments, dict) else None
            if inner is not None:
                path: yaml.Path = ("turns", i, "assistant", j, "input", *inner)
                mark = doc.locate(path)
                yield Problem(label, mark.line, mark.col, "error",
                              f"{where(path)}: this value has no JSON form (a date?); quote it")


def _template_mark(doc: yaml.YamlDocument, path: yaml.Path, template_line: int) -> tuple[int, int]:
    position = doc.positions.get(path)
    if position is None:
        return 1, 1
    if position.block_scalar:  # `say: |` : the text starts on the next line
        return position.value.line + template_line, 1
    if template_line == 1:
        return position.value.line, position.value.col
    return position.value.line + template_line - 1, 1


def speakable(text: str) -> str:
    """Rendered `say` text as the emulator can speak and send it: a template or a tool result can
    produce control characters (a NUL cannot go into espeak-ng's argv) and lone surrogates (no
    UTF-8 form): each becomes U+FFFD, as a decoder shows an unreadable character."""
    return _UNSPEAKABLE.sub("\ufffd", text)


_UNSPEAKABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def render_say(text: str, context: Mapping[str, Any]) -> str:
    """Render a `say` template (sandboxed, undefined names are errors)."""
    return _compile(text).render(context)


def render_say_leniently(text: str, context: Mapping[str, Any]) -> str:
    """Render a `say` template with unknown names and attributes left out (a degraded answer)."""
    try:
        return _compile_lenient(text).render(context)
    except Exception:  # the caller has already failed once: say what can be said
        return ""


def default_turn(user: str | None, *, speech_s: float | None) -> Turn:
    """What the emulator answers when no scenario turn is left: it reports what it heard."""
    if speech_s is not None:
        return Turn(items=(Say(f"I heard you speak for {speech_s:.1f} seconds."),), user=user)
    return Turn(items=(Say("You said: {{ user }}"),), user=user)


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema(SCENARIO)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


@cache
def _compile(text: str) -> jinja2.Template:
    return make_environment().from_string(text)


@cache
def _compile_lenient(text: str) -> jinja2.Template:
    env = make_environment()
    env.undefined = jinja2.ChainableUndefined
    return env.from_string(text)


def _turn(data: Mapping[str, Any]) -> Turn:
    items: list[Item] = []
    for item in data["assistant"]:
        if "say" in item:
            items.append(Say(item["say"]))
        else:
            items.append(ToolCall(item["tool"], item.get("input", {})))
    return Turn(items=tuple(items), user=data.get("user"))
