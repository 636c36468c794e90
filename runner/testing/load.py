"""Reading a test file (`*.test.yaml`): bounded read, YAML with positions, the JSON Schema
(schemas/agent-test.schema.json), then every value the schema cannot judge (the agent file,
scenario and WAV paths, regular expressions, inline scenarios, mocked and expected tool names).
Every problem is reported at once as FILE:LINE:COL, like `agent-run check`; the agent file's own
problems are reported in the agent file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from runner.config import yaml
from runner.config.loader import check_agent
from runner.config.model import AgentConfig
from runner.config.report import Problem, shown
from runner.config.schema import describe, translate, where
from runner.emulator import scenario as scenarios
from runner.emulator.scenario import check_scenario
from runner.errors import ConfigError
from runner.files import (
    MAX_AGENT_FILE_BYTES,
    MAX_WAV_FILE_BYTES,
    UnreadableFileError,
    check_user_file,
    read_user_file,
)
from runner.models import is_nova2
from runner.schemas import AGENT_TEST, load_schema
from runner.testing import services
from runner.testing.expectations import EXPECTATIONS, Expectation
from runner.testing.model import (
    DEFAULT_TURN_TIMEOUT_S,
    TARGETS,
    AudioInput,
    Case,
    Mock,
    ModelSide,
    SpeechInput,
    TestFile,
    TextInput,
    Turn,
    UserInput,
    Where,
)

SUFFIX = ".test.yaml"


@dataclass(frozen=True, slots=True)
class LoadedTests:
    """A checked test file and the agent it tests."""

    tests: TestFile
    agent: AgentConfig
    warnings: tuple[Problem, ...] = ()


def load_tests(path: str | Path) -> LoadedTests:
    """The test file at `path` and its agent; raises ConfigError listing every error."""
    loaded, problems = check_tests(path)
    if loaded is None:
        errors = [p for p in problems if p.is_error]
        listing = "\n".join(p.format() for p in errors)
        raise ConfigError(f"{shown(str(path))}: {len(errors)} error(s):\n{listing}", tuple(problems))
    return loaded


def check_tests(path: str | Path) -> tuple[LoadedTests | None, list[Problem]]:
    """The test file at `path` (None when it or its agent has an error) and every problem found."""
    check = _Check(str(path), Path(path))
    data = _parse(check)
    if data is None:
        return None, sorted(check.problems)
    for schema_path, message in _schema_problems(data):
        check.add(schema_path, message)
    services = _services(check, data)
    agent = _agent(check, data)
    cases = _cases(check, data, agent)
    if check.failed or agent is None:
        return None, sorted(set(check.problems))
    tests = TestFile(path=Path(path), agent_path=agent.path, vars=_vars(data), cases=tuple(cases),
                     description=str(data.get("description", "")), services=services)
    return LoadedTests(tests, agent, tuple(p for p in check.problems if not p.is_error)), \
        sorted(set(check.problems))


@dataclass
class _Check:
    label: str
    path: Path
    doc: yaml.YamlDocument = field(default_factory=lambda: yaml.YamlDocument(None, {}))
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: yaml.Path, message: str) -> None:
        mark = self.doc.locate(path)
        self.problems.append(Problem(self.label, mark.line, mark.col, "error", message))

    def where(self, path: yaml.Path) -> Where:
        mark = self.doc.locate(path)
        return Where(self.label, mark.line, mark.col)

    @property
    def failed(self) -> bool:
        return any(p.is_error for p in self.problems)

    def relative(self, name: str) -> Path:
        """A path written in the test file, relative to the test file's folder."""
        return self.path.parent / name


def _parse(check: _Check) -> dict[str, Any] | None:
    try:
        raw = read_user_file(check.path, limit=MAX_AGENT_FILE_BYTES, what="a test file")
    except UnreadableFileError as exc:
        check.problems.append(Problem(check.label, 1, 1, "error", exc.reason))
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        why = f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded)"
        check.problems.append(Problem(check.label, line, col, "error", why))
        return None
    try:
        check.doc = yaml.load(text)
    except yaml.YamlSyntaxError as exc:
        check.problems.append(Problem(check.label, exc.mark.line, exc.mark.col, "error", exc.message))
        return None
    for mark, message in check.doc.issues:
        check.problems.append(Problem(check.label, mark.line, mark.col, "error", message))
    if not isinstance(check.doc.data, dict):
        check.add((), "a test file must be a mapping of keys (version, agent, cases, ...)")
        return None
    data: dict[str, Any] = check.doc.data
    return data


# -- schema --------------------------------------------------------------------------------------

@cache
def _validator() -> jsonschema.protocols.Validator:
    # Inline scenarios (`model:` turns, settings, faults) are checked by the scenario loader, which
    # words their problems best; for this validator they are anything (editors still get the refs).
    schema = _without_scenario_refs(copy.deepcopy(load_schema(AGENT_TEST)))
    return jsonschema.Draft202012Validator(schema)


def _without_scenario_refs(node: Any) -> Any:
    if isinstance(node, dict):
        if str(node.get("$ref", "")).startswith("scenario.schema.json"):
            return {}
        return {k: _without_scenario_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_scenario_refs(v) for v in node]
    return node


def _schema_problems(data: Any) -> Iterator[tuple[yaml.Path, str]]:
    found: dict[tuple[yaml.Path, str], None] = {}
    for err in _validator().iter_errors(data):
        found.update(dict.fromkeys(_translate(err)))
    yield from found


def _translate(err: jsonschema.ValidationError) -> Iterator[tuple[yaml.Path, str]]:
    path: yaml.Path = tuple(err.absolute_path)
    kind = str(err.validator)
    if path[-2:-1] == ("expect",) and kind in ("maxProperties", "minProperties", "additionalProperties"):
        kinds = ", ".join(EXPECTATIONS)
        if kind == "additionalProperties":
            yield from translate(err)
        else:
            yield path, f"{where(path)}: an expectation is one key, its kind (one of: {kinds})"
        return
    if kind == "oneOf" and path[-1:] in (("tool_called",), ("no_tool_called",), ("says",), ("heard",)):
        if isinstance(err.instance, dict):  # the mapping form: its own problems say more
            inner = [e for e in err.context or [] if str(e.validator) != "type"]
            for e in inner:
                yield from _translate(e)
            if inner:
                return
        yield path, f"{where(path)}: {_ONE_OF_HINTS[str(path[-1])]}, got {describe(err.instance)}"
        return
    if kind == "minItems":
        yield path, f"{where(path)}: must not be empty"
        return
    yield from translate(err)


_ONE_OF_HINTS = {
    "tool_called": "expected a tool name or {name, args, args_regex}",
    "no_tool_called": "expected true (no tool at all) or a tool name",
    "says": "expected a text (contains) or {contains, not_contains, regex, not_regex}",
    "heard": "expected a text (contains) or {contains, not_contains, regex, not_regex}",
}


# -- the agent -----------------------------------------------------------------------------------

def _vars(data: Mapping[str, Any]) -> dict[str, str]:
    values = data.get("vars")
    if not isinstance(values, dict):
        return {}
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()}


def _agent(check: _Check, data: Mapping[str, Any]) -> AgentConfig | None:
    name = data.get("agent")
    if not isinstance(name, str) or not name:
        return None
    # Checked with a stand-in port: the services' own are only known once they run.
    ports = dict.fromkeys(_service_names(data), services.CHECK_PORT)
    values = {k: v for k, v in _vars(data).items() if all(
        m.group(1) in ports for m in services.REFERENCE.finditer(v))}  # others: reported by _services
    agent, problems = check_agent(check.relative(name), services.bind_vars(values, ports))
    for problem in problems:
        if problem.message.startswith("--var "):  # a `vars:` entry of this file, not the agent's fault
            key = problem.message.split()[1].rstrip(":")
            check.add(("vars", key) if key in (data.get("vars") or {}) else ("vars",),
                      "vars." + problem.message.removeprefix("--var "))
        else:
            check.problems.append(problem)
    if agent is None and not any(p.file == check.label for p in check.problems if p.is_error):
        check.add(("agent",), f"agent: the agent file {shown(name)} has errors (listed above)")
    return agent


# -- services ------------------------------------------------------------------------------------

def _service_names(data: Mapping[str, Any]) -> list[str]:
    value = data.get("services")
    return [str(k) for k in value] if isinstance(value, dict) else []


def _services(check: _Check, data: Mapping[str, Any]) -> tuple[services.ServiceSpec, ...]:
    """The `services:` the schema let through, and `vars` naming only services that exist."""
    names = _service_names(data)
    for key, value in (data.get("vars") or {}).items() if isinstance(data.get("vars"), dict) else ():
        for match in services.REFERENCE.finditer(value if isinstance(value, str) else ""):
            if match.group(1) not in names:
                known = f" (it has: {', '.join(names)})" if names else " (the file has no `services:`)"
                check.add(("vars", key), f"vars.{key}: no service {match.group(1)!r}{known}")
    value = data.get("services")
    built: list[services.ServiceSpec] = []
    for name, spec in value.items() if isinstance(value, dict) else ():
        if not isinstance(spec, dict) or not isinstance(spec.get("command"), list) or not spec["command"]:
            continue  # reported by the schema
        command = tuple(str(arg) for arg in spec["command"])
        built.append(services.ServiceSpec(
            name=str(name), where=check.where(("services", name)), command=command,
            folder=check.path.parent, ready="http" if spec.get("ready") == "http" else "tcp",
            startup_timeout_s=_number(spec.get("startup_timeout_s"), services.DEFAULT_STARTUP_TIMEOUT_S)))
    return tuple(built)


# -- cases ---------------------------------------------------------------------------------------

def _cases(check: _Check, data: Mapping[str, Any], agent: AgentConfig | None) -> list[Case]:
    cases = data.get("cases")
    if not isinstance(cases, list):
        return []
    # An agent with MCP servers has tools known only once they start: its names are not checked here.
    tools = {t.name for t in agent.tools} if agent is not None and not agent.mcp_servers else None
    default_model = _model(check, data.get("model"), ("model",))
    default_mocks = _mocks(check, data.get("mocks"), ("mocks",), tools)
    default_timeout = _number(data.get("timeout_s"), DEFAULT_TURN_TIMEOUT_S)
    built: list[Case] = []
    names: dict[str, int] = {}
    for i, case in enumerate(cases):
        if not isinstance(case, dict):
            continue
        path: yaml.Path = ("cases", i)
        name = case.get("name")
        if isinstance(name, str):
            if name in names:
                check.add((*path, "name"),
                          f"cases[{i}].name: {name!r} is already the name of cases[{names[name]}]")
            names.setdefault(name, i)
        model = _model(check, case["model"], (*path, "model")) if "model" in case else default_model
        mocks = {**default_mocks, **_mocks(check, case.get("mocks"), (*path, "mocks"), tools)}
        turns = _turns(check, case.get("turns"), (*path, "turns"), tools, agent)
        if isinstance(name, str) and model is not None:
            targets = case.get("targets")
            built.append(Case(name=name, where=check.where(path), turns=tuple(turns), model=model,
                              mocks=mocks, timeout_s=_number(case.get("timeout_s"), default_timeout),
                              targets=tuple(targets) if isinstance(targets, list) else TARGETS))
    return built


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _model(check: _Check, value: Any, path: yaml.Path) -> ModelSide | None:
    if not isinstance(value, dict):
        return ModelSide()
    sources = [k for k in ("scenario", "replay") if k in value]
    inline = [k for k in value if k not in ("scenario", "replay", "description")]
    if len(sources) + bool(inline) > 1:
        given = [f"`{k}`" for k in sources] + ([f"inline {', '.join(inline)}"] if inline else [])
        check.add((*path, [*sources, *inline][1]),
                  f"{where(path)}: one model side: `scenario: FILE`, `replay: DIR` or a scenario written "
                  f"inline; here: {' and '.join(given)}")
        return None
    if "replay" in value:
        return _replay(check, value["replay"], (*path, "replay"))
    if "scenario" in value:
        if not isinstance(value["scenario"], str):
            return None
        file = check.relative(value["scenario"])
        scenario, problems = check_scenario(file)
        check.problems.extend(problems)
        if scenario is None and not problems:
            check.add((*path, "scenario"), f"{where(path)}.scenario: cannot load {shown(str(file))}")
        return ModelSide(scenario, file) if scenario is not None else None
    # Written inline: the scenario loader checks it, at this file's own lines and columns.
    positions = {p[len(path):]: pos for p, pos in check.doc.positions.items() if p[:len(path)] == path}
    # (_build is the scenario loader's own step after parsing: reused so both word problems alike.)
    scenario, problems = scenarios._build(yaml.YamlDocument(value, positions), check.label, [])
    check.problems.extend(_inside(problems, path))
    return ModelSide(scenario) if scenario is not None else None


_WHOLE_SENTENCES = ("unknown key", "missing required")


def _replay(check: _Check, value: Any, path: yaml.Path) -> ModelSide | None:
    from runner.emulator.replay import ReplayError, load_tape

    if not isinstance(value, str):
        return None
    try:
        return ModelSide(replay=load_tape(check.relative(value)))
    except ReplayError as exc:
        check.add(path, f"{where(path)}: {str(exc).removeprefix('--replay ')}")
        return None


def _inside(problems: list[Problem], path: yaml.Path) -> Iterator[Problem]:
    """Scenario problems (worded relative to the scenario) worded relative to this file."""
    prefix = where(path)
    for p in problems:
        message = p.message
        if message.startswith(_WHOLE_SENTENCES):
            for key in ("turns", "fallback", "settings", "faults"):
                message = message.replace(f" in {key}", f" in {prefix}.{key}")
        elif message[:1].islower():
            message = f"{prefix}.{message}"
        yield Problem(p.file, p.line, p.col, p.severity, message)


def _mocks(check: _Check, value: Any, path: yaml.Path, tools: set[str] | None) -> dict[str, Mock]:
    if not isinstance(value, dict):
        return {}
    mocks: dict[str, Mock] = {}
    for name, mock in value.items():
        if not isinstance(mock, dict):
            continue
        if tools is not None and name not in tools:
            check.add((*path, name), f"{where(path)}: the agent has no tool {name!r}{_known(tools)}")
            continue
        if ("result" in mock) == ("error" in mock):
            check.add((*path, name), f"{where((*path, name))}: give either `result` or `error`")
            continue
        if "result" in mock and not _json_ok(mock["result"]):
            result_path = (*path, name, "result")
            check.add(result_path, f"{where(result_path)}: this value has no JSON form (a date?); quote it")
            continue
        mocks[name] = Mock(name, mock.get("result"), mock.get("error"))
    return mocks


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _known(tools: set[str]) -> str:
    return f" (it has: {', '.join(sorted(tools))})" if tools else " (it has no tools)"


def _turns(check: _Check, value: Any, path: yaml.Path, tools: set[str] | None,
           agent: AgentConfig | None) -> list[Turn]:
    model_id = agent.model.id if agent is not None else None
    # Whether the assistant speaks first (None: unknown, the agent has errors).
    greets = None if agent is None else bool(agent.greeting) and is_nova2(agent.model.id)
    turns: list[Turn] = []
    for j, turn in enumerate(value if isinstance(value, list) else []):
        if not isinstance(turn, dict):
            continue
        turn_path = (*path, j)
        given = [k for k in ("user", "say", "audio") if k in turn]
        if len(given) > 1:
            check.add((*turn_path, given[1]), f"{where(turn_path)}: a turn has one input: `user` (text), "
                                              f"`say` (speech) or `audio` (a WAV); here: {', '.join(given)}")
            continue
        if "wait_ms" in turn and "barge_in_ms" in turn:
            check.add((*turn_path, "barge_in_ms"),
                      f"{where(turn_path)}: `wait_ms` waits for the assistant to finish, `barge_in_ms` "
                      "does not: use one")
            continue
        if j == 0 and "barge_in_ms" in turn and greets is False:
            check.add((*turn_path, "barge_in_ms"), f"{where((*turn_path, 'barge_in_ms'))}: the first turn "
                                                   "has no answer to speak over (the agent has no greeting)")
            continue
        user_input = _input(check, turn, turn_path)
        if isinstance(user_input, TextInput) and model_id is not None and not is_nova2(model_id):
            check.add((*turn_path, "user"), f"{where((*turn_path, 'user'))}: typed text needs a Nova 2 "
                                            f"model; {model_id} only hears speech (use `say:` or `audio:`)")
            continue
        expectations = list(_expectations(check, turn.get("expect"), (*turn_path, "expect"), tools))
        if user_input is None and given:
            continue
        barge = turn.get("barge_in_ms")
        turns.append(Turn(where=check.where(turn_path), input=user_input, expectations=tuple(expectations),
                          wait_ms=int(turn.get("wait_ms", 0)),
                          barge_in_ms=int(barge) if isinstance(barge, int | float) else None))
    return turns


def _input(check: _Check, turn: Mapping[str, Any], path: yaml.Path) -> UserInput | None:
    if isinstance(turn.get("user"), str):
        return TextInput(turn["user"])
    if isinstance(turn.get("say"), str):
        return SpeechInput(turn["say"])
    if isinstance(turn.get("audio"), str):
        file = check.relative(turn["audio"])
        try:
            check_user_file(file, limit=MAX_WAV_FILE_BYTES, what="a WAV file")
        except UnreadableFileError as exc:
            check.add((*path, "audio"), f"{where((*path, 'audio'))}: {shown(str(file))} {exc.reason}")
            return None
        return AudioInput(file)
    return None


def _expectations(check: _Check, value: Any, path: yaml.Path, tools: set[str] | None
                  ) -> Iterator[Expectation]:
    for k, item in enumerate(value if isinstance(value, list) else []):
        if not isinstance(item, dict) or len(item) != 1:
            continue
        kind, arg = next(iter(item.items()))
        parse = EXPECTATIONS.get(kind)
        if parse is None:
            continue  # reported by the schema, with a "did you mean"
        item_path = (*path, k, kind)
        try:
            expectation = parse(arg, check.where((*path, k)))
        except ValueError as exc:  # what the schema cannot judge (a regular expression)
            check.add(item_path, f"{where(item_path)}: {exc}")
            continue
        except (TypeError, KeyError, AttributeError):  # a shape the schema has already reported
            continue
        named = getattr(expectation, "name", None)
        if tools is not None and isinstance(named, str) and named not in tools:
            check.add(item_path, f"{where(item_path)}: the agent has no tool {named!r}{_known(tools)}")
            continue
        yield expectation


def find_test_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The test files named by `paths`: files as given, folders searched for `*.test.yaml` (sorted).
    Also the paths that name nothing usable, each with why."""
    found: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob(f"*{SUFFIX}") if p.is_file())
            if not inside:
                problems.append(f"{shown(str(path))}: no {SUFFIX} files in this folder")
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            problems.append(f"{shown(str(path))}: no such file or folder")
    return list(dict.fromkeys(found)), problems
