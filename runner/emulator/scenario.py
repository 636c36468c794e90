"""Scenario files: the scripted model the emulator plays (schemas/scenario.schema.json).

A scenario is data: turns of `say` (Jinja text) and `tool` items (whose `input` strings are Jinja
too), each turn optionally with a `when:` condition, an optional `fallback`, optional VAD/pacing
settings and optional faults. `check_scenario` reads a file the way the agent loader reads agent
files (bounded read, UTF-8, YAML with positions), checks it against the schema, compiles every
template and `when:` condition, and reports every problem at once as FILE:LINE:COL, unknown keys
with a "did you mean". So a broken scenario fails at start, never in the middle of a session. A
new turn key is a schema property, a `Turn` field and a line in `_turn`.

Which turn answers a user input is `choose_turn`'s decision, a function of the text the model
heard (None when it has no transcript: speech without ASR):
1. the first turn with a `when:` that the heard text satisfies (such turns are reusable: a test
   scenario serves many phrasings, and the same question may come again);
2. else the next turn without `when:`, in file order (each plays once per conversation);
3. else the `fallback` items; else the built-in default answer (what was heard).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jsonschema

from runner.config import yaml
from runner.config.report import Problem, shown
from runner.config.schema import did_you_mean, non_json_path, translate, where
from runner.emulator.when import When, WhenError, compile_when
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
    # None: the turn plays in order; else it answers the inputs that satisfy the condition.
    when: When | None = None


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
    # What unmatched input gets once the in-order turns are used up; () : the default answer.
    fallback: tuple[Item, ...] = ()

    @property
    def matches_words(self) -> bool:
        """Whether any turn has a `when:` (which needs a transcript to match)."""
        return any(turn.when is not None for turn in self.turns)


@dataclass(frozen=True, slots=True)
class Choice:
    """The turn that answers one user input."""

    turn: Turn
    label: str  # where it comes from, for logs and records: "turns[2]", "fallback", "default"
    ordered: bool  # playing it to the end uses up the next in-order turn
    match: Mapping[str, str] = field(default_factory=dict)  # the regex captures


def choose_turn(scenario: Scenario, heard: str | None, position: int, *, speech_s: float | None) -> Choice:
    """The turn that answers what the model `heard` (None: no transcript), `position` in-order
    turns having been used up already. See the module docstring for the rule."""
    if heard is not None:
        for index, turn in enumerate(scenario.turns):
            captures = turn.when.match(heard) if turn.when is not None else None
            if captures is not None:
                return Choice(turn, f"turns[{index}]", ordered=False, match=captures)
    ordered = [(index, turn) for index, turn in enumerate(scenario.turns) if turn.when is None]
    if position < len(ordered):
        index, turn = ordered[position]
        return Choice(turn, f"turns[{index}]", ordered=True)
    if scenario.fallback:
        return Choice(Turn(items=scenario.fallback), "fallback", ordered=False)
    return Choice(default_turn(heard, speech_s=speech_s), "default", ordered=False)


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


def check_embedded_scenario(doc: yaml.YamlDocument, at: yaml.Path, label: str
                            ) -> tuple[Scenario | None, list[Problem]]:
    """A scenario written inside another YAML file (the model's side of a test case): the
    mapping at path `at` of `doc`, read from file `label`. Problems are located in that file;
    their messages name paths inside the scenario (`turns[0].when`)."""
    inner = {path[len(at):]: position for path, position in doc.positions.items()
             if path[:len(at)] == at and len(path) > len(at)}
    data: Any = doc.data
    for key in at:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            data = None
    return _build(yaml.YamlDocument(data, inner), label, [])


def _build(doc: yaml.YamlDocument, label: str, problems: list[Problem]
           ) -> tuple[Scenario | None, list[Problem]]:
    data = {} if doc.data is None else doc.data  # an empty file: the default behaviour
    for path, message in _schema_problems(data):
        mark = doc.locate(path)
        problems.append(Problem(label, mark.line, mark.col, "error", message))
    conditions: dict[int, When] = {}
    if isinstance(data, dict):
        conditions = dict(_conditions(doc, data, label, problems))
        problems.extend(_template_problems(doc, data, label, conditions))
        problems.extend(_input_problems(doc, data, label))
    if problems:
        return None, sorted(set(problems))
    turns = tuple(_turn(t, conditions.get(i)) for i, t in enumerate(data.get("turns", [])))
    return Scenario(turns=turns, settings=Settings(**_ints(Settings, data.get("settings", {}))),
                    faults=Faults(**_ints(Faults, data.get("faults", {}))), source=label,
                    fallback=_items(data.get("fallback", []))), []


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
        elif str(err.validator) == "minItems" and tuple(err.absolute_path)[-1:] in (("assistant",),
                                                                                   ("fallback",)):
            yield tuple(err.absolute_path), f"{where(tuple(err.absolute_path))}: must not be empty " \
                                             "(add a `say` or `tool` item)"
        elif str(err.validator) == "minProperties" and tuple(err.absolute_path)[-1:] == ("when",):
            yield tuple(err.absolute_path), f"{where(tuple(err.absolute_path))}: needs `words` (words " \
                                             "the user says) or `regex` (a regular expression), or both"
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


def _conditions(doc: yaml.YamlDocument, data: dict[str, Any], label: str,
                problems: list[Problem]) -> Iterator[tuple[int, When]]:
    """Each turn's compiled `when:` by turn index; a condition that does not compile is a problem."""
    turns = data.get("turns")
    for i, turn in enumerate(turns if isinstance(turns, list) else []):
        when = turn.get("when") if isinstance(turn, dict) else None
        if not isinstance(when, str | dict) or not when:
            continue  # absent, or a schema problem already reported
        try:
            yield i, compile_when(when)
        except WhenError as exc:
            path: yaml.Path = ("turns", i, "when")
            if exc.key:
                path = (*path, exc.key) if exc.index is None else (*path, exc.key, exc.index)
            position = doc.positions.get(path)
            mark = position.value if position is not None else doc.locate(path)
            problems.append(Problem(label, mark.line, mark.col, "error", f"{where(path)}: {exc}"))


def _item_lists(data: dict[str, Any]) -> Iterator[tuple[yaml.Path, list[Any], int | None]]:
    """Every list of assistant items: (its path, the items, its turn's index; None for `fallback`)."""
    turns = data.get("turns")
    for i, turn in enumerate(turns if isinstance(turns, list) else []):
        items = turn.get("assistant") if isinstance(turn, dict) else None
        if isinstance(items, list):
            yield ("turns", i, "assistant"), items, i
    fallback = data.get("fallback")
    if isinstance(fallback, list):
        yield ("fallback",), fallback, None


def _templates(items: list[Any], base: yaml.Path) -> Iterator[tuple[yaml.Path, str]]:
    """Every template among `items`: `say` texts and the strings inside `input` that use Jinja."""
    for j, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("say"), str):
            yield (*base, j, "say"), item["say"]
        stack: list[tuple[yaml.Path, Any]] = [((*base, j, "input"), item.get("input"))]
        while stack:  # iterative: input values may nest deeply
            path, value = stack.pop()
            if isinstance(value, dict):
                stack.extend(((*path, key), inner) for key, inner in reversed(value.items()))
            elif isinstance(value, list):
                stack.extend(((*path, k), inner) for k, inner in reversed(list(enumerate(value))))
            elif isinstance(value, str) and _is_template(value):
                yield path, value


def _template_problems(doc: yaml.YamlDocument, data: dict[str, Any], label: str,
                       conditions: Mapping[int, When]) -> Iterator[Problem]:
    for base, items, turn in _item_lists(data):
        for path, text in _templates(items, base):
            try:
                _compile(text)
            except jinja2.TemplateSyntaxError as exc:
                line, col = _template_mark(doc, path, exc.lineno or 1)
                yield Problem(label, line, col, "error",
                              f"{where(path)}: template syntax error: {exc.message}")
                continue
            except Exception as exc:  # Jinja's parser fails in other ways too
                # RecursionError: it recurses once per level (`{{ [[[[...`); ValueError: an
                # integer literal of 4300+ digits.
                line, col = _template_mark(doc, path, 1)
                why = "expressions nested too deeply" if isinstance(exc, RecursionError) \
                    else f"{type(exc).__name__}: {exc}"
                yield Problem(label, line, col, "error", f"{where(path)}: template cannot be compiled: {why}")
                continue
            condition = conditions.get(turn) if turn is not None else None
            for name, template_line in _match_names(text):
                if condition is None or name not in condition.groups:
                    line, col = _template_mark(doc, path, template_line)
                    yield Problem(label, line, col, "error",
                                  f"{where(path)}: `match.{name}` {_no_group(turn, condition)}")


def _no_group(turn: int | None, condition: When | None) -> str:
    if turn is None:
        return "is always empty in the fallback (it answers input that matched no `when:`)"
    if condition is None or not condition.groups:
        return "is not available: `match` holds the named groups of the turn's `when: {regex: ...}`, " \
               "and this turn has none"
    groups = ", ".join(sorted(condition.groups))
    return f"is not a named group of this turn's `when` regex (its groups: {groups})"


def _match_names(text: str) -> Iterator[tuple[str, int]]:
    """The names a compiled template looks up in `match` (`match.x`, `match['x']`) and their lines."""
    try:
        ast = make_environment().parse(text)
    except Exception:  # it compiled once already; a parser limit hit now is reported elsewhere
        return
    for node in ast.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        if isinstance(node, jinja2.nodes.Getattr) and _is_match(node.node):
            yield node.attr, node.lineno
        elif isinstance(node, jinja2.nodes.Getitem) and _is_match(node.node) \
                and isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, str):
            yield node.arg.value, node.lineno


def _is_match(node: jinja2.nodes.Node) -> bool:
    return isinstance(node, jinja2.nodes.Name) and node.name == "match"


def _input_problems(doc: yaml.YamlDocument, data: dict[str, Any], label: str) -> Iterator[Problem]:
    """Tool arguments are sent as JSON: a YAML date (`2026-01-01`) or `!!binary` value has no JSON form."""
    for base, items, _ in _item_lists(data):
        for j, item in enumerate(items):
            arguments = item.get("input") if isinstance(item, dict) else None
            inner = non_json_path(arguments) if isinstance(arguments, dict) else None
            if inner is not None:
                path: yaml.Path = (*base, j, "input", *inner)
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


def render_arguments(call: ToolCall, context: Mapping[str, Any], *, lenient: bool = False) -> str:
    """A tool call's arguments as toolUse.content carries them (a JSON string), every string
    value that uses Jinja rendered with `context` (each render sandboxed and bounded, like `say`).
    Values stay strings: `"{{ match.n }}"` gives "42", not 42. `lenient` leaves unknown parts out."""
    def render(value: Any) -> Any:
        if isinstance(value, str) and _is_template(value):
            text = render_say_leniently(value, context) if lenient else render_say(value, context)
            return _LONE_SURROGATE.sub("\ufffd", text)
        if isinstance(value, Mapping):
            return {key: render(inner) for key, inner in value.items()}
        if isinstance(value, Sequence) and not isinstance(value, str):
            return [render(inner) for inner in value]
        return value

    return json.dumps(render(call.input), ensure_ascii=False)


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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


def _turn(data: Mapping[str, Any], when: When | None) -> Turn:
    return Turn(items=_items(data["assistant"]), user=data.get("user"), when=when)


def _items(data: Sequence[Mapping[str, Any]]) -> tuple[Item, ...]:
    return tuple(Say(item["say"]) if "say" in item else ToolCall(item["tool"], item.get("input", {}))
                 for item in data)
