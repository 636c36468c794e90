"""MCP servers as tool sources, through the official `mcp` SDK (the one module that imports it).

`connect_server` starts one server of an agent's `mcp_servers:` (a stdio subprocess, or a
streamable HTTP endpoint), lists its tools and yields an `McpConnection` whose `call` runs a tool
and returns its result as JSON-able data, raising ToolError for everything that goes wrong so the
model gets an error result (runner.tools.invoke). Every wait is bounded: the start by the server's
`startup_timeout_s`, a call by the tool's `timeout_s` (enforced by invoke_tool), and the close by
the SDK's shutdown (stdin closed, then SIGTERM, then SIGKILL to the server's process group), whose
grace periods are shortened here so that a run asked to stop still ends within two seconds.

Secrets (`${env:NAME}` values of `env` and `headers`) are resolved only here, at the start, and
every message this module produces has them replaced by their reference again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.config.model import McpServerConfig
from runner.config.secrets import env_refs, redact, resolve_env_refs
from runner.errors import RunnerError, ToolError

if TYPE_CHECKING:
    from mcp import Client

# The SDK (with pydantic) takes ~1 s to import: only runs that have MCP servers pay for it.


def _load_sdk() -> None:
    """Import the SDK; raise McpStartError-worthy ImportError when it is not installed."""
    import mcp.client.stdio

    # The SDK waits 2 s for a server to exit after its stdin closes, then 2 s after SIGTERM: a run
    # with a server busy in a call would take over 2 s to stop. These keep the whole close near 0.5 s
    # (SIGTERM is itself a polite request: a server may still clean up on it).
    mcp.client.stdio.PROCESS_TERMINATION_TIMEOUT = 0.25
    mcp.client.stdio.FORCE_KILL_TIMEOUT = 0.25


# How many `tools/list` pages a server may answer with (a misbehaving server could page forever).
MAX_LIST_PAGES = 50
# How much of a server's stderr a startup error quotes.
STDERR_TAIL_CHARS = 1500


class McpStartError(RunnerError):
    """A server that could not be started or listed; the message names the agent file (`where`) and
    the server, never a secret."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail


@dataclass(frozen=True, slots=True)
class McpTool:
    name: str
    description: str
    input_schema: Mapping[str, Any]


def sdk_missing() -> str | None:
    """Why MCP servers cannot be used in this installation, or None."""
    if importlib.util.find_spec("mcp") is None:
        return "mcp_servers need the MCP SDK, which is not installed: pip install 'nova-agent-runner[mcp]'"
    return None


def describe_server(server: McpServerConfig) -> str:
    """`stdio: python3 -m x` or `http: https://...`: what the server is, without any secret."""
    if server.command is not None:
        return f"stdio: {' '.join([server.command, *server.args])}"
    return f"http: {server.url}"


class McpConnection:
    """One started server: its tools and a way to call them (from any task of the run)."""

    def __init__(self, server: McpServerConfig, client: Client, tools: tuple[McpTool, ...],
                 secrets: Mapping[str, str]) -> None:
        self.server = server
        self.tools = tools
        self._client = client
        self._secrets = secrets

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> Any:
        """The tool's result as JSON-able data; raises ToolError when the call fails."""
        from mcp import MCPError

        try:
            result = await self._client.call_tool(tool, dict(arguments))
        except MCPError as exc:  # the connection closed (the server died), or a protocol error
            reason = "has closed the connection (did it exit?)" if _closed(exc) \
                else f"answered with an error: {exc}"
            raise ToolError(self._redact(f"MCP server {self.server.name!r} {reason}")) from None
        except (OSError, ValueError) as exc:  # a transport error, a reply that is not MCP
            raise ToolError(self._redact(
                f"MCP server {self.server.name!r} failed: {type(exc).__name__}: {exc}")) from None
        if result.is_error:
            text = _content_text(result.content) or "the tool reported an error"
            raise ToolError(self._redact(f"{text} (MCP server {self.server.name!r})"))
        if isinstance(result.structured_content, dict):
            return result.structured_content
        return _content_value(result.content)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def _closed(exc: Exception) -> bool:
    from mcp_types import CONNECTION_CLOSED

    return getattr(exc, "code", None) == CONNECTION_CLOSED


def _content_text(content: list[Any]) -> str:
    return "\n".join(block.text for block in content if getattr(block, "type", None) == "text")


def _content_value(content: list[Any]) -> Any:
    """What the model is given for unstructured content: one text block as such (JSON text of an
    object stays an object, runner.tools.invoke.result_to_json), several as a list; images and
    other media are only named (a voice model cannot look at them)."""
    values: list[Any] = []
    for block in content:
        kind = getattr(block, "type", None)
        if kind == "text":
            values.append(block.text)
        else:
            values.append({"type": kind, "mime_type": getattr(block, "mime_type", None),
                           "note": "not text: not shown to the model"})
    if len(values) == 1:
        return values[0]
    return {"content": values}


def _resolve(server: McpServerConfig, environ: Mapping[str, str], where: str
             ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(env, headers, secrets): the server's values with `${env:NAME}` resolved, and every value
    read from the environment by its name (to redact)."""
    secrets: dict[str, str] = {}

    def resolve(label: str, template: str) -> str:
        for name in env_refs(template):
            if name not in environ:
                raise McpStartError(where, f"MCP server {server.name!r}: {label} needs the environment "
                                    f"variable {name}, which is not set")
            secrets[name] = environ[name]
        return resolve_env_refs(template, environ)

    env = {name: resolve(f"env.{name}", value) for name, value in server.env}
    headers = {name: resolve(f"headers.{name}", value) for name, value in server.headers}
    return env, headers, secrets


@contextlib.asynccontextmanager
async def connect_server(server: McpServerConfig, *, where: str,
                         environ: Mapping[str, str] | None = None) -> AsyncIterator[McpConnection]:
    """Start `server`, list its tools (all of them: filtering is the caller's), yield the connection.

    Raises McpStartError (naming `where`, the agent file, and the server) when it cannot be started
    or listed within its startup_timeout_s. Closing stops the server (its process group, for stdio).
    """
    missing = sdk_missing()
    if missing is not None:
        raise McpStartError(where, missing)
    _load_sdk()
    from mcp import Client

    env, headers, secrets = _resolve(server, os.environ if environ is None else environ, where)
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(server.startup_timeout_s):
                    transport = await _transport(stack, server, env, headers, errlog)
                    client = await stack.enter_async_context(Client(transport))
                    tools = await _list_tools(client)
            except TimeoutError:
                raise McpStartError(where, _start_failure(
                    server, f"did not start and list its tools within {server.startup_timeout_s:g} s "
                                   f"(startup_timeout_s)", errlog, secrets)) from None
            except Exception as exc:  # whatever the SDK, the subprocess or the network raised
                raise McpStartError(where, _start_failure(server, _describe(exc), errlog, secrets)) from None
            yield McpConnection(server, client, tools, secrets)


def find_command(command: str) -> str:
    """`command` as it will be run: a name is looked up on PATH, then beside the runner's Python,
    where a virtual environment keeps the console scripts of what was installed into it (so
    `command: mcp-server-time` works from `.venv/bin/agent-run` without activating the venv). A
    path containing '/' is left alone (relative to the agent's folder, where the server runs)."""
    if "/" in command or shutil.which(command) is not None:
        return command
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else command


async def _transport(stack: contextlib.AsyncExitStack, server: McpServerConfig, env: dict[str, str],
                     headers: dict[str, str], errlog: TextIO) -> Any:
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client

    # Private in the SDK, but its documented way to send headers is an HTTP client of one's own,
    # and this one has the SDK's timeouts (the exact SDK version is pinned in pyproject.toml).
    from mcp.shared._httpx_utils import create_mcp_http_client

    if server.command is not None:
        # The SDK gives the server only HOME, LOGNAME, PATH, SHELL, TERM and USER, plus `env`.
        params = StdioServerParameters(command=find_command(server.command), args=list(server.args), env=env,
                                       cwd=server.cwd)
        return stdio_client(params, errlog=errlog)
    assert server.url is not None
    http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
    return streamable_http_client(server.url, http_client=http)


async def _list_tools(client: Client) -> tuple[McpTool, ...]:
    tools: list[McpTool] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(McpTool(t.name, t.description or "", dict(t.input_schema)) for t in page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tuple(tools)


def _start_failure(server: McpServerConfig, reason: str, errlog: TextIO, secrets: Mapping[str, str]) -> str:
    message = f"MCP server {server.name!r} ({describe_server(server)}) {reason}"
    tail = _tail(errlog)
    if tail:
        quoted = "\n".join(f"    {line}" for line in tail.splitlines())
        message += f"\n  its error output ended with:\n{quoted}"
    return redact(message, secrets)


def _tail(errlog: TextIO) -> str:
    try:
        errlog.seek(0, os.SEEK_END)
        size = errlog.tell()
        errlog.seek(max(0, size - STDERR_TAIL_CHARS * 4))
        text = errlog.read()[-STDERR_TAIL_CHARS:]
    except (OSError, ValueError):
        return ""
    return text.strip()


def _describe(exc: BaseException) -> str:
    """A short reason for a startup failure: the innermost error of an exception group."""
    from mcp import MCPError

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError) and _closed(exc):
        return "closed the connection before answering (did it exit?)"
    if isinstance(exc, FileNotFoundError):
        return f"could not be started: command not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"could not be started: permission denied: {exc.filename or exc}"
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return f"failed to start: {type(exc).__name__}{': ' + text[:300] if text else ''}"
