"""Agent files: read, parse, check everything, build frozen AgentConfig values.

`check_agent` never stops at the first problem: YAML structure, the JSON Schema, then semantic
checks (model and voice, tools and their handlers, the prompt, template overrides, `--var`s) each
run on whatever parts are well-formed, and every problem carries FILE:LINE:COL.
"""

from __future__ import annotations

import copy
import errno
import importlib.util
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import jsonschema
from jsonschema import Draft202012Validator

from runner.config import yaml
from runner.config.model import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MCP_STARTUP_TIMEOUT_S,
    DEFAULT_POLICY,
    DEFAULT_ROTATE_AFTER_S,
    DEFAULT_TIMEOUT_S,
    AgentConfig,
    AudioConfig,
    InactivityConfig,
    McpServerConfig,
    ModelConfig,
    SessionConfig,
    ToolConfig,
    TransferSpec,
    VarValue,
)
from runner.config.prompt import MAX_PROMPT_BYTES, PromptError, convert_override, render_prompt
from runner.config.report import Problem, Severity, shown
from runner.config.schema import (
    MAX_INPUT_SCHEMA_DEPTH,
    NO_CONTROL_PATTERN,
    describe,
    did_you_mean,
    non_json_path,
    reference_problem,
    schema_depth_path,
    schema_problems,
    schema_references,
)
from runner.config.secrets import EnvUse, env_refs, malformed_env_refs
from runner.config.signature import signature_problems
from runner.config.templates import load_event_templates
from runner.errors import ConfigError
from runner.files import MAX_AGENT_FILE_BYTES, MAX_TEXT_FILE_BYTES, UnreadableFileError, read_user_file
from runner.models import ALL_VOICES, MODELS, VOICE_SUCCESSORS, ModelInfo, lifecycle_warning, model_info
from runner.protocol.setup import InferenceSettings
from runner.protocol.templates import TEMPLATE_EVENTS, TEMPLATE_SUFFIX, EventTemplateError, EventTemplates
from runner.tools.builtins import TRANSFER_HANDLER, destination_problem, env_name, transfer_handler
from runner.tools.http import check_http, env_ref_paths, http_function
from runner.tools.http import display as http_display
from runner.tools.importer import HandlerImportError, resolve_handler
from runner.transports.endpoint import endpoint_problem

_EMPTY: Mapping[str, str] = MappingProxyType({})
# Top-level key: `true` lets system_prompt_file and templates name files outside the agent's folder.
OUTSIDE_FOLDER_KEY = "allow_files_outside_agent_folder"


@dataclass
class _Check:
    """One file's check in progress: where it is, what was parsed, what is wrong so far."""

    label: str  # the path as the user wrote it: problems are reported with it
    folder: Path
    text: str = ""
    doc: yaml.YamlDocument = field(default_factory=lambda: yaml.YamlDocument(None, {}))
    problems: list[Problem] = field(default_factory=list)
    # Every `${env:NAME}` of HTTP tools and MCP servers, set or not (AgentConfig.env_uses).
    env_uses: list[EnvUse] = field(default_factory=list)

    def add(self, path: yaml.Path, message: str, severity: Severity = "error") -> None:
        mark = self.doc.locate(path)
        self.problems.append(Problem(self.label, mark.line, mark.col, severity, message))

    def env_use(self, path: yaml.Path, name: str, user: str, tool: str | None = None) -> None:
        mark = self.doc.locate(path)
        self.env_uses.append(EnvUse(name, user, self.label, mark.line, mark.col, tool))

    def add_at(self, file: str, line: int, col: int, message: str) -> None:
        self.problems.append(Problem(file, line, col, "error", message))

    @property
    def failed(self) -> bool:
        return any(p.is_error for p in self.problems)


def _read(check: _Check, path: Path) -> str | None:
    try:
        raw = read_user_file(path, limit=MAX_AGENT_FILE_BYTES, what="an agent file")
    except UnreadableFileError as exc:
        reason = "is a directory, not an agent file" if _is_dir(path) else exc.reason
        check.add_at(check.label, 1, 1, reason)
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        check.add_at(check.label, line, col,
                     f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded)")
        return None


def _parse(check: _Check) -> dict[str, Any] | None:
    try:
        check.doc = yaml.load(check.text)
    except yaml.YamlSyntaxError as exc:
        check.add_at(check.label, exc.mark.line, exc.mark.col, exc.message)
        return None
    for mark, message in check.doc.issues:
        check.add_at(check.label, mark.line, mark.col, message)
    if check.doc.data is None:
        check.add_at(check.label, 1, 1, "the file is empty: an agent needs version, name, model, voice "
                                        "and system_prompt")
        return None
    if not isinstance(check.doc.data, dict):
        check.add_at(check.label, 1, 1, "an agent file must be a mapping of keys (version, name, model, ...)")
        return None
    data: dict[str, Any] = check.doc.data
    return data


def _model(check: _Check, data: dict[str, Any]) -> tuple[str | None, ModelInfo | None]:
    model = data.get("model")
    model_id = model.get("id") if isinstance(model, dict) else None
    _check_endpoint(check, model)
    if not isinstance(model_id, str) or not model_id:
        return None, None
    info = model_info(model_id)
    if info is None:
        check.add(("model", "id"), f"unknown model id {model_id!r} (known: {', '.join(MODELS)}); "
                                   f"assuming a newer model with Nova 2 capabilities", "warning")
    elif (retired := lifecycle_warning(model_id)) is not None:
        check.add(("model", "id"), retired, "warning")
    return model_id, info


def _check_endpoint(check: _Check, model: Any) -> None:
    """model.endpoint beyond the schema's `^https?://` (issue 13, runner/transports/endpoint.py):
    `https://` with no host or an impossible port hung a run."""
    endpoint = model.get("endpoint") if isinstance(model, dict) else None
    if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")) \
            and (problem := endpoint_problem(endpoint)) is not None:
        check.add(("model", "endpoint"), f"model.endpoint {problem}")


def _check_voice(check: _Check, data: dict[str, Any], model_id: str | None, info: ModelInfo | None) -> None:
    voice = data.get("voice")
    if not isinstance(voice, str):
        return
    voices = info.voices if info is not None else ALL_VOICES
    if voice in voices:
        return
    for_model = f"{info.label} ({model_id})" if info is not None else "any known model"
    if voice.lower() in voices:
        check.add(("voice",), f"voice ids are lowercase: write {voice.lower()!r}")
        return
    # A voice of another model (v1's greta on Nova 2) is named as such, with its successor.
    others = [m.label for m in MODELS.values() if m is not info and voice in m.voices]
    elsewhere = f" (it is a {' and '.join(others)} voice)" if others and info is not None else ""
    successor = VOICE_SUCCESSORS.get(voice.lower())
    hint = f"; did you mean {successor!r}?" if successor in voices else did_you_mean(voice.lower(), voices)
    check.add(("voice",), f"voice {voice!r} is not available for {for_model}{elsewhere}"
                          f"{hint} (voices: {', '.join(voices)})")


def _check_capabilities(check: _Check, data: dict[str, Any], model_id: str | None,
                        info: ModelInfo | None) -> None:
    turn = data.get("turn_detection")
    if info is not None and not info.supports_endpointing and isinstance(turn, dict) \
            and "endpointing_sensitivity" in turn:
        check.add(("turn_detection", "endpointing_sensitivity"),
                  f"turn_detection.endpointing_sensitivity is only supported by Nova 2 models; "
                  f"{model_id} does not accept it")
    if info is not None and not info.supports_interactive_text and isinstance(data.get("greeting"), str):
        check.add(("greeting",), f"{model_id} cannot be made to speak first with text (Nova 2 only, "
                                 f"nova-sonic-protocol.md §2.6); the greeting may not be spoken", "warning")


def _check_input_schema(check: _Check, index: int, schema: Any) -> bool:
    base: yaml.Path = ("tools", index, "input_schema")
    if not isinstance(schema, dict):
        return False
    too_deep = schema_depth_path(schema)
    if too_deep is not None:  # before jsonschema, which recurses once per level (and more)
        check.add((*base, *too_deep), f"tools[{index}].input_schema is nested more than "
                                      f"{MAX_INPUT_SCHEMA_DEPTH} levels deep")
        return False
    not_json = non_json_path(schema)
    if not_json is not None:  # it is sent to the model as JSON
        what = describe(_at(schema, not_json))
        hint = "" if "quote it" in what else "; quote it to make it text"
        check.add((*base, *not_json), f"tools[{index}].input_schema.{'.'.join(map(str, not_json))}: "
                                      f"{what} has no JSON form{hint}")
        return False
    cls = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    errors = list(cls(cls.META_SCHEMA).iter_errors(schema))
    for err in errors:
        inner = ".".join(str(p) for p in err.absolute_path)
        at = f" at {inner}" if inner else ""
        check.add((*base, *err.absolute_path),
                  f"tools[{index}].input_schema is not a valid JSON Schema{at}: {err.message}")
    refs_ok = True
    if not errors:
        for path, uri in schema_references(schema):
            problem = reference_problem(schema, uri)
            if problem is not None:
                refs_ok = False
                inner = ".".join(map(str, path))
                check.add((*base, *path), f"tools[{index}].input_schema.{inner}: {problem}")
    if schema.get("type") != "object":
        check.add(base, f"tools[{index}].input_schema must be an object schema ('type: object'): "
                        f"the model sends tool arguments as a JSON object")
        return False
    return not errors and refs_ok


def _at(value: Any, path: yaml.Path) -> Any:
    for part in path:
        value = value[part]
    return value


def _check_tool(check: _Check, index: int, tool: Any, seen: dict[str, int], data: dict[str, Any],
                variables: Mapping[str, VarValue]) -> ToolConfig | None:
    if not isinstance(tool, dict):
        return None
    name = tool.get("name")
    if isinstance(name, str):
        if name in seen:
            check.add(("tools", index, "name"),
                      f"duplicate tool name {name!r} (first used by tools[{seen[name]}])")
        seen.setdefault(name, index)
    schema_ok = _check_input_schema(check, index, tool.get("input_schema"))
    if "http" in tool and "handler" not in tool:
        return _check_http_tool(check, index, tool, schema_ok, data, variables)
    handler = tool.get("handler")
    if not isinstance(handler, str):
        return None
    try:
        function = resolve_handler(handler, check.folder)
    except HandlerImportError as exc:
        check.add(("tools", index, "handler"), f"tools[{index}].handler: {exc}")
        return None
    except OSError as exc:  # the module's file name cannot even be looked up (too long, ...)
        check.add(("tools", index, "handler"), f"tools[{index}].handler: cannot look for the module "
                                               f"of {_short(handler)}: {exc.strerror or exc}")
        return None
    if schema_ok:
        for problem in signature_problems(function, tool["input_schema"]):
            check.add(("tools", index, "handler"), f"tools[{index}].handler {handler!r}: {problem}")
    if not (isinstance(name, str) and isinstance(tool.get("description"), str) and schema_ok):
        return None
    timeout = tool.get("timeout_s", DEFAULT_TIMEOUT_S)
    max_bytes = tool.get("max_result_bytes", DEFAULT_MAX_RESULT_BYTES)
    if not isinstance(timeout, int | float) or not isinstance(max_bytes, int | float):
        return None  # the schema check reported it
    transfer = _transfer_spec(check, index, tool, handler)
    if transfer is not None:
        function = transfer_handler(transfer)
    return ToolConfig(name=name, description=tool["description"],
                      input_schema=copy.deepcopy(tool["input_schema"]), handler=handler,
                      function=function, timeout_s=float(timeout), max_result_bytes=int(max_bytes),
                      transfer=transfer)


def _transfer_spec(check: _Check, index: int, tool: dict[str, Any], handler: str) -> TransferSpec | None:
    """A builtin:transfer tool's settings (defaults when it has no `transfer:`); a missing
    credential variable is a warning naming it (the tool then answers with an error result)."""
    data = tool.get("transfer")
    if handler != TRANSFER_HANDLER:
        if data is not None:
            check.add(("tools", index, "transfer"), f"tools[{index}].transfer: only a tool with "
                                                    f"'handler: {TRANSFER_HANDLER}' has transfer settings")
        return None
    data = data if isinstance(data, dict) else {}
    defaults = TransferSpec()
    spec = TransferSpec(allow=tuple(a for a in data.get("allow", ()) if isinstance(a, str)),
                        account_sid=data.get("account_sid", defaults.account_sid),
                        auth_token=data.get("auth_token", defaults.auth_token))
    for i, destination in enumerate(spec.allow):
        if (problem := destination_problem(destination)) is not None:
            check.add(("tools", index, "transfer", "allow", i),
                      f"tools[{index}].transfer.allow[{i}]: {problem.removeprefix('cannot transfer to ')}")
    for key in ("account_sid", "auth_token"):
        name = env_name(getattr(spec, key))
        if name is not None and name not in os.environ:
            path: yaml.Path = ("tools", index, "transfer", key) if key in data else ("tools", index,
                                                                                     "handler")
            check.add(path, f"tools[{index}]: environment variable {name} ({key} of {TRANSFER_HANDLER}) is "
                            f"not set; the tool answers with an error result until it is", "warning")
    return spec


def _check_http_tool(check: _Check, index: int, tool: dict[str, Any], schema_ok: bool,
                     data: dict[str, Any], variables: Mapping[str, VarValue]) -> ToolConfig | None:
    """A tool answered by an HTTP request (runner/tools/http/): its templates, URL, CA file."""
    raw = tool["http"]
    if not isinstance(raw, dict):
        return None  # the schema check reported it
    base: yaml.Path = ("tools", index, "http")

    def inside(rel: str, target: Path) -> bool:
        return _inside_folder(check, data, "ca_file", rel, target, at=(*base, "ca_file"))

    spec, problems = check_http(raw, input_schema=tool.get("input_schema"), variables=variables,
                                folder=Path(check.label).parent, inside_folder=inside)
    for problem in problems:
        inner = ".".join(map(str, problem.path))
        check.add((*base, *problem.path), f"tools[{index}].http.{inner}: {problem.message}", problem.severity)
    name, timeout = tool.get("name"), tool.get("timeout_s", DEFAULT_TIMEOUT_S)
    max_bytes = tool.get("max_result_bytes", DEFAULT_MAX_RESULT_BYTES)
    complete = isinstance(tool.get("description"), str) and schema_ok
    if spec is None or not isinstance(name, str) or not complete or not isinstance(timeout, int | float) \
            or not isinstance(max_bytes, int | float):
        return None
    if spec.timeout_s is not None and spec.timeout_s > timeout:
        check.add((*base, "timeout_s"), f"tools[{index}].http.timeout_s ({spec.timeout_s:g} s) is longer "
                                        f"than the tool's timeout_s ({timeout:g} s), which ends the call "
                                        f"first", "warning")
    for place, variable in env_ref_paths(spec):
        check.env_use((*base, *place), variable, f"tool {name}", tool=name)
    function = http_function(spec, variables=variables, timeout_s=float(timeout))
    return ToolConfig(name=name, description=tool["description"],
                      input_schema=copy.deepcopy(tool["input_schema"]), handler=http_display(spec),
                      function=function, timeout_s=float(timeout), max_result_bytes=int(max_bytes), http=spec)


def _check_tools(check: _Check, data: dict[str, Any], variables: Mapping[str, VarValue]
                 ) -> tuple[ToolConfig, ...]:
    tools = data.get("tools")
    if not isinstance(tools, list):
        return ()
    seen: dict[str, int] = {}
    built = [_check_tool(check, i, tool, seen, data, variables) for i, tool in enumerate(tools)]
    return tuple(t for t in built if t is not None)


def _check_mcp_servers(check: _Check, data: dict[str, Any]) -> tuple[McpServerConfig, ...]:
    servers = data.get("mcp_servers")
    if not isinstance(servers, dict):
        return ()
    built = [_check_mcp_server(check, name, server) for name, server in servers.items()]
    if servers and importlib.util.find_spec("mcp") is None:  # found without importing it (~0.5 s)
        check.add(("mcp_servers",), "mcp_servers need the MCP SDK, which is not installed: "
                                    "pip install 'nova-agent-runner[mcp]'", "warning")
    return tuple(s for s in built if s is not None)


# Keys only one kind of MCP server takes.
_STDIO_KEYS = ("args", "env")
_HTTP_KEYS = ("headers", "allow_http")


def _check_mcp_server(check: _Check, name: Any, server: Any) -> McpServerConfig | None:
    if not isinstance(name, str) or not isinstance(server, dict):
        return None
    at: yaml.Path = ("mcp_servers", name)
    label = f"mcp_servers.{name}"
    command, url = server.get("command"), server.get("url")
    if command is not None and url is not None:
        check.add((*at, "url"), f"{label}: use either command (a stdio server) or url (a streamable "
                                f"HTTP server), not both")
        return None
    if command is None and url is None:
        check.add(at, f"{label}: needs command (a stdio server) or url (a streamable HTTP server)")
        return None
    other = _HTTP_KEYS if command is not None else _STDIO_KEYS
    for key in other:
        if key in server:
            kind = "a stdio server (command)" if command is not None else "a streamable HTTP server (url)"
            check.add((*at, key), f"{label}.{key} does not apply to {kind}")
    if isinstance(url, str) and not _http_allowed(url, server.get("allow_http") is True):
        check.add((*at, "url"), f"{label}.url: plain http:// sends the headers unencrypted; use https://, "
                                f"a loopback host, or set 'allow_http: true'")
        return None
    user = f"MCP server {name}"
    env = _mcp_env(check, at, label, server.get("env"), user)
    headers = server.get("headers", {})
    if isinstance(headers, dict):
        for header, value in headers.items():
            if isinstance(value, str):
                _check_refs(check, (*at, "headers", header), f"{label}.headers.{header}", value, user)
    allowed = server.get("tools")
    timeout = server.get("timeout_s", DEFAULT_TIMEOUT_S)
    startup = server.get("startup_timeout_s", DEFAULT_MCP_STARTUP_TIMEOUT_S)
    if not (isinstance(command, str) or isinstance(url, str)) or env is None \
            or not isinstance(headers, dict) or not isinstance(timeout, int | float) \
            or not isinstance(startup, int | float) or not (allowed is None or isinstance(allowed, list)):
        return None  # the schema check reported it
    return McpServerConfig(
        name=name, command=command, args=tuple(str(a) for a in server.get("args", [])), env=env,
        cwd=check.folder if command is not None else None, url=url,
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
        tools=None if allowed is None else tuple(str(t) for t in allowed),
        timeout_s=float(timeout), startup_timeout_s=float(startup))


def _mcp_env(check: _Check, at: yaml.Path, label: str, env: Any, user: str
             ) -> tuple[tuple[str, str], ...] | None:
    """`env` as (NAME, value template) pairs: a listed NAME passes the runner's own NAME on."""
    if env is None:
        return ()
    if isinstance(env, list):
        pairs = [(n, f"${{env:{n}}}") for n in env if isinstance(n, str)]
        for i, name in enumerate(env):
            if isinstance(name, str):
                _note_refs(check, (*at, "env", i), f"{label}.env", [name], user)
    elif isinstance(env, dict):
        pairs = [(str(k), v) for k, v in env.items() if isinstance(v, str)]
        for n, value in pairs:
            _check_refs(check, (*at, "env", n), f"{label}.env.{n}", value, user)
    else:
        return None
    return tuple(pairs)


def _check_refs(check: _Check, path: yaml.Path, label: str, value: str, user: str) -> None:
    """A value's `${env:NAME}` references: malformed ones are errors (they would be sent as they
    are), unset variables warnings."""
    for bad in malformed_env_refs(value):
        check.add(path, f"{label}: {bad!r} is not a valid reference: write ${{env:NAME}} (NAME: letters, "
                        f"digits and '_', not starting with a digit)")
    _note_refs(check, path, label, env_refs(value), user)


def _note_refs(check: _Check, path: yaml.Path, label: str, names: list[str], user: str) -> None:
    """Record each reference (a run checks them when it starts) and warn now about unset ones."""
    for name in names:
        check.env_use(path, name, user)
        if name not in os.environ:
            check.add(path, f"{label}: environment variable {name} is not set; a run refuses to start "
                            f"without it", "warning")


def _http_allowed(url: str, allow_http: bool) -> bool:
    if not url.startswith("http://") or allow_http:
        return True
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _variables(check: _Check, data: dict[str, Any], overrides: Mapping[str, str]) -> dict[str, VarValue]:
    declared = data.get("vars")
    defaults: dict[str, VarValue] = {}
    if isinstance(declared, dict):
        defaults = {k: v for k, v in declared.items() if isinstance(v, str | int | float | bool)}
    result = dict(defaults)
    for key, text in overrides.items():
        if key not in defaults:
            names = ", ".join(sorted(defaults)) or "none"
            check.add(("vars",), f"--var {key}: no such variable in vars{did_you_mean(key, list(defaults))} "
                                 f"(declared: {names})")
            continue
        try:
            result[key] = convert_override(text, defaults[key])
        except ValueError as exc:
            check.add(("vars", key), f"--var {key}: {exc}")
    return result


def _path_text(value: Any) -> TypeGuard[str]:
    """Whether `value` can name a file: text without control characters (the schema reports one)."""
    return isinstance(value, str) and re.search(NO_CONTROL_PATTERN, value) is not None


def _inside_folder(check: _Check, data: dict[str, Any], key: str, rel: str, target: Path,
                   at: yaml.Path | None = None) -> bool:
    """Whether `target` (named by `key`) resolves inside the agent's folder, or the agent opted out.

    Resolving first catches every way out: `..`, an absolute path, a symlink to elsewhere.
    """
    if data.get(OUTSIDE_FOLDER_KEY) is True:
        return True
    base = Path(check.label).parent.resolve()
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):  # a symlink loop: the read reports it
        return True
    if resolved.is_relative_to(base):
        return True
    check.add(at or (key,), f"{key} {rel!r} resolves to {resolved}, outside the agent's folder {base}; "
                            f"move it into the folder, or set '{OUTSIDE_FOLDER_KEY}: true' to allow it")
    return False


def _prompt_source(check: _Check, data: dict[str, Any]) -> tuple[str, str, yaml.Path] | None:
    """(template text, file label, path of its key) of the system prompt, if it can be read."""
    inline = data.get("system_prompt")
    if isinstance(inline, str) and "system_prompt_file" not in data:
        return inline, check.label, ("system_prompt",)
    rel = data.get("system_prompt_file")
    if not _path_text(rel) or "system_prompt" in data:
        return None
    file = Path(check.label).parent / rel
    if not _inside_folder(check, data, "system_prompt_file", rel, file):
        return None
    try:
        return (read_user_file(file, limit=MAX_TEXT_FILE_BYTES, what="a system prompt file").decode("utf-8"),
                str(file), ("system_prompt_file",))
    except (UnreadableFileError, UnicodeDecodeError) as exc:
        reason = exc.reason if isinstance(exc, UnreadableFileError) else "is not UTF-8 text"
        check.add(("system_prompt_file",), f"system_prompt_file {rel!r}: {reason} (resolved to {file})")
        return None


def _prompt_error_mark(check: _Check, key: yaml.Path, line: int) -> tuple[int, int]:
    pos = check.doc.positions.get(key)
    if pos is None:
        return 1, 1
    if not pos.block_scalar:
        return pos.key.line, pos.key.col
    # A `|` block: template line N is file line (indicator line + N); point at its first character.
    file_line = pos.value.line + line
    lines = check.text.splitlines()
    text = lines[file_line - 1] if file_line <= len(lines) else ""
    return file_line, len(text) - len(text.lstrip()) + 1


def _check_prompt(check: _Check, data: dict[str, Any], variables: Mapping[str, VarValue]) -> str | None:
    source = _prompt_source(check, data)
    if source is None:
        return None
    text, file, key = source
    try:
        rendered = render_prompt(text, variables)
    except PromptError as exc:
        if file == check.label and key == ("system_prompt",):
            line, col = _prompt_error_mark(check, key, exc.line)
            check.add_at(file, line, col, f"system_prompt: {exc.message}")
        else:
            check.add_at(file, exc.line, 1, f"system prompt: {exc.message}")
        return None
    if not _text_ok(check, rendered, text, file, key, "the rendered system prompt"):
        return None
    size = len(rendered.encode("utf-8"))
    if size > MAX_PROMPT_BYTES:
        check.add(key, f"the rendered system prompt is {size} bytes; Nova accepts at most "
                       f"{MAX_PROMPT_BYTES} bytes of text (40 KB)")
        return None
    if not rendered.strip():
        check.add(key, "the rendered system prompt is empty")
        return None
    return rendered


def _check_greeting(check: _Check, data: dict[str, Any], variables: Mapping[str, VarValue]) -> str | None:
    greeting = data.get("greeting")
    if not isinstance(greeting, str):
        return None
    try:
        rendered = render_prompt(greeting, variables)
    except PromptError as exc:
        check.add(("greeting",), f"greeting: {exc.message}")
        return None
    ok = _text_ok(check, rendered, greeting, check.label, ("greeting",), "the rendered greeting")
    return rendered if ok else None


def _text_ok(check: _Check, rendered: str, source: str, file: str, key: yaml.Path, what: str) -> bool:
    """Whether rendered template text can be sent (no control character, no lone surrogate: a
    template can write them, `{{ '\\x00' }}`, and a prompt file can hold them). A character
    written in the file itself is located there; one a template produced, at the key."""
    problem = yaml.check_text(rendered)
    if problem is None:
        return True
    bad = yaml.check_text(source)
    if bad is not None and file != check.label:
        offset = next(i for i, ch in enumerate(source) if yaml.check_text(ch) is not None)
        line = source.count("\n", 0, offset) + 1
        check.add_at(file, line, offset - (source.rfind("\n", 0, offset) + 1) + 1,
                     f"system prompt: {bad.split(' at character')[0]} (text may hold tab and newline, "
                     f"no other control character)")
    else:
        check.add(key, f"{what} has a {problem}")
    return False


def _override_names_ok(check: _Check, data: dict[str, Any], folder: Path, rel: str) -> bool:
    ok = True
    for path in sorted(folder.glob(f"*{TEMPLATE_SUFFIX}")):
        name = path.name.removesuffix(TEMPLATE_SUFFIX)
        if name not in TEMPLATE_EVENTS:
            hint = did_you_mean(name, list(TEMPLATE_EVENTS)) or f" (known: {', '.join(TEMPLATE_EVENTS)})"
            check.add_at(str(path), 1, 1, f"unknown event template {name!r}{hint}")
            ok = False
        elif path.is_symlink() and not _inside_folder(check, data, "templates", f"{rel}/{path.name}", path):
            ok = False
    return ok


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long to look up: not a directory
        return False


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else f"{text[:50]}...({len(text)} characters)")


def _is_loop(path: Path) -> bool:
    try:
        path.stat()
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _check_templates(check: _Check, data: dict[str, Any]) -> EventTemplates | None:
    rel = data.get("templates")
    if "templates" in data and not _path_text(rel):
        return None
    folder = Path(check.label).parent / rel if isinstance(rel, str) else None
    if folder is not None and isinstance(rel, str):
        try:
            folder.stat()
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ELOOP):  # reported just below
                check.add(("templates",), f"templates folder {_short(rel)}: {exc.strerror or exc}")
                return None
        if not folder.exists():
            what = "is a symbolic link loop" if _is_loop(folder) else "not found"
            check.add(("templates",), f"templates folder {rel!r} {what} (resolved to {folder})")
            return None
        if not folder.is_dir():
            check.add(("templates",), f"templates {rel!r} is not a folder (resolved to {folder})")
            return None
        if not _inside_folder(check, data, "templates", rel, folder) \
                or not _override_names_ok(check, data, folder, rel):
            return None
    try:
        templates = load_event_templates(folder)
    except EventTemplateError as exc:
        check.add_at(exc.filename, exc.line, 1, exc.detail)
        return None
    except (ConfigError, OSError) as exc:
        check.add(("templates",), f"templates: {exc}")
        return None
    for failure in templates.check():
        check.add_at(failure.filename, failure.line, 1, failure.detail)
    return templates


def _build(check: _Check, path: Path, data: dict[str, Any], parts: dict[str, Any]) -> AgentConfig:
    model = data["model"]
    inference = data.get("inference", {})
    audio = data.get("audio", {})
    defaults = InferenceSettings()
    return AgentConfig(
        path=path,
        name=data["name"],
        description=data.get("description", ""),
        model=ModelConfig(model["id"], model.get("region"), model.get("endpoint")),
        # JSON Schema counts 1024.0 as an integer: integer fields are made ints here.
        inference=InferenceSettings(
            max_tokens=int(inference.get("max_tokens", defaults.max_tokens)),
            top_p=float(inference.get("top_p", defaults.top_p)),
            temperature=float(inference.get("temperature", defaults.temperature))),
        endpointing_sensitivity=data.get("turn_detection", {}).get("endpointing_sensitivity"),
        voice=data["voice"],
        audio=AudioConfig(int(audio.get("input_sample_rate", 16000)),
                          int(audio.get("output_sample_rate", 24000)), int(audio.get("chunk_ms", 32))),
        policy=data.get("policy", DEFAULT_POLICY),
        vars=MappingProxyType(parts["vars"]),
        system_prompt=parts["prompt"],
        greeting=parts["greeting"],
        tools=parts["tools"],
        templates=parts["templates"],
        session=replace(parts["session"], rotate_after_s=float(data.get("session", {}).get(
            "rotate_after_s", DEFAULT_ROTATE_AFTER_S))),
        mcp_servers=parts["mcp_servers"],
        env_uses=tuple(check.env_uses),
    )


def _run_checks(check: _Check, data: dict[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    for where, message in schema_problems(data):
        check.add(where, message)
    model_id, info = _model(check, data)
    _check_voice(check, data, model_id, info)
    _check_capabilities(check, data, model_id, info)
    variables = _variables(check, data, overrides)
    return {"vars": variables, "prompt": _check_prompt(check, data, variables),
            "greeting": _check_greeting(check, data, variables),
            "tools": _check_tools(check, data, variables), "templates": _check_templates(check, data),
            "session": _check_call_control(check, data, variables, model_id, info),
            "mcp_servers": _check_mcp_servers(check, data)}


def _check_call_control(check: _Check, data: dict[str, Any], variables: Mapping[str, VarValue],
                        model_id: str | None, info: ModelInfo | None) -> SessionConfig:
    """session.inactivity, max_duration_s and closing_line: their texts rendered with `vars`;
    a model that takes no text (v1) cannot say them, which is a warning."""
    session = data.get("session")
    if not isinstance(session, dict):
        return SessionConfig()
    speaks_text = info is None or info.supports_interactive_text
    inactivity = None
    block = session.get("inactivity")
    if isinstance(block, dict) and all(isinstance(block.get(k), int | float)
                                       for k in ("nudge_after_s", "end_after_s")):
        base = InactivityConfig(float(block["nudge_after_s"]), float(block["end_after_s"]))
        inactivity = replace(
            base, nudge=_call_text(check, block, "nudge", ("session", "inactivity", "nudge"), variables,
                                   base.nudge),
            goodbye=_call_text(check, block, "goodbye", ("session", "inactivity", "goodbye"), variables,
                               base.goodbye))
        if not speaks_text:
            total = inactivity.nudge_after_s + inactivity.end_after_s
            check.add(("session", "inactivity"), f"{model_id} takes no text input (Nova 2 only): no nudge "
                                                 f"or goodbye can be said; the conversation just ends after "
                                                 f"{total:g} s of silence", "warning")
    limit = session.get("max_duration_s")
    max_duration = float(limit) if isinstance(limit, int | float) else None
    closing = _call_text(check, session, "closing_line", ("session", "closing_line"), variables,
                         SessionConfig().closing_line)
    if max_duration is not None and not speaks_text:
        check.add(("session", "max_duration_s"), f"{model_id} takes no text input (Nova 2 only): the "
                                                 f"closing line cannot be said; the conversation just ends "
                                                 f"at max_duration_s", "warning")
    if "closing_line" in session and max_duration is None:
        check.add(("session", "closing_line"), "session.closing_line is only said when "
                                               "session.max_duration_s is set", "warning")
    return SessionConfig(inactivity=inactivity, max_duration_s=max_duration, closing_line=closing)


def _call_text(check: _Check, block: dict[str, Any], key: str, path: yaml.Path,
               variables: Mapping[str, VarValue], default: str) -> str:
    """A call-control text (a Jinja template like the greeting), rendered; `default` when absent."""
    text = block.get(key)
    if not isinstance(text, str):
        return default
    try:
        rendered = render_prompt(text, variables)
    except PromptError as exc:
        check.add(path, f"{'.'.join(map(str, path))}: {exc.message}")
        return default
    return rendered if _text_ok(check, rendered, text, check.label, path, f"the rendered {key}") else default


def check_agent(path: Path | str, overrides: Mapping[str, str] = _EMPTY
                ) -> tuple[AgentConfig | None, list[Problem]]:
    """Check the agent file at `path`: the config (None when any error) and every problem found."""
    path = Path(path)
    try:
        folder = path.resolve().parent
    except (OSError, RuntimeError):  # a symlink loop: reading the file reports it
        folder = path.absolute().parent
    check = _Check(label=str(path), folder=folder)
    text = _read(check, path)
    data = None
    if text is not None:
        check.text = text
        data = _parse(check)
    if data is None:
        return None, sorted(check.problems)
    parts = _run_checks(check, data, overrides)
    config = None if check.failed else _build(check, path, data, parts)
    return config, sorted(check.problems)


def load_agent_and_warnings(path: Path | str, overrides: Mapping[str, str] = _EMPTY
                            ) -> tuple[AgentConfig, list[Problem]]:
    """The agent at `path` and its warnings; raises ConfigError listing every error when it is not valid."""
    config, problems = check_agent(path, overrides)
    if config is None:
        errors = [p for p in problems if p.is_error]
        listing = "\n".join(p.format() for p in errors)
        raise ConfigError(f"{shown(str(path))}: {len(errors)} error(s) in the agent file:\n{listing}",
                          tuple(problems))
    return config, problems


def load_agent(path: Path | str, overrides: Mapping[str, str] = _EMPTY) -> AgentConfig:
    """The agent at `path`; raises ConfigError listing every error when it is not valid."""
    return load_agent_and_warnings(path, overrides)[0]

