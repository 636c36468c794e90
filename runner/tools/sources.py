"""Tool sources: what adds tools to an agent when its run starts (today, its MCP servers).

`open_tool_sources(agent)` starts every server of `agent.mcp_servers` at once, keeps the tools each
server's allow list names, and yields the agent with them added as ordinary ToolConfigs (handler
display `mcp:SERVER/TOOL`), so the conversation calls them like any other tool. Leaving it stops
every server, all at once and within a bound.

Each server lives in a task of its own: the SDK's transports run anyio task groups that cancel
the task they were entered in when something inside fails, so a server dying mid-run must only
ever take its own task down, never the conversation's. A connection is entered and left in that
same task, as anyio requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

import jsonschema

from runner.config.model import AgentConfig, McpServerConfig, ToolConfig
from runner.config.schema import MAX_INPUT_SCHEMA_DEPTH, schema_depth_path, tool_schema_validator
from runner.tools.mcp import McpConnection, McpStartError, McpTool, connect_server, describe_server

# Nova's rule for tool names (schemas/agent.schema.json, tools[].name).
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Leaving: how long all servers together may take to stop (the SDK's own escalation is ~1 s,
# see runner.tools.mcp); past it their tasks are cancelled.
CLOSE_TIMEOUT_S = 1.5

Warn = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


@contextlib.asynccontextmanager
async def open_tool_sources(agent: AgentConfig, *, warn: Warn = _ignore, info: Warn = _ignore,
                            environ: Mapping[str, str] | None = None) -> AsyncIterator[AgentConfig]:
    """Start the agent's MCP servers and yield the agent with their (allowed) tools added.

    Raises McpStartError naming the agent file and the server when one cannot be started, or when
    a server's tool has the name of another tool. `warn` hears about tools left
    out (an allow-list name the server does not offer, a name or schema Nova cannot take); `info`
    gets one line per server naming the tools it adds.
    """
    if not agent.mcp_servers:
        yield agent
        return
    async with open_servers(agent.mcp_servers, where=str(agent.path), environ=environ) as outcomes:
        connections = [c for c in outcomes if isinstance(c, McpConnection)]
        added = _tools(agent, connections, warn)
        for connection in connections:
            names = [t.name for t in added if t.handler.startswith(f"mcp:{connection.server.name}/")]
            info(f"MCP server {connection.server.name}: {', '.join(names) or 'no tools offered'}")
        yield replace(agent, tools=(*agent.tools, *added))


@contextlib.asynccontextmanager
async def open_servers(servers: tuple[McpServerConfig, ...], *, where: str,
                       environ: Mapping[str, str] | None = None, fail_fast: bool = True
                       ) -> AsyncIterator[list[McpConnection | McpStartError]]:
    """Start every server at once; yield, in order, each one's connection or why it did not start.

    With `fail_fast`, the first failure is raised as soon as it happens (and every server is
    stopped): a run needs all of them. Every wait is bounded by the servers' startup_timeout_s.
    """
    holders = [_Holder(s, where, environ) for s in servers]
    # Plain tasks, not a TaskGroup: a TaskGroup held across the `yield` would wrap whatever the run
    # raises (a TransportError, a KeyboardInterrupt) in an ExceptionGroup. `finally` always reaps them.
    tasks = [asyncio.create_task(h.run(), name=f"mcp:{h.server.name}") for h in holders]
    try:
        futures = [h.ready for h in holders]
        until = asyncio.FIRST_EXCEPTION if fail_fast else asyncio.ALL_COMPLETED
        await asyncio.wait(futures, return_when=until)
        failed = [f.exception() for f in futures if f.done() and f.exception() is not None]
        if fail_fast and failed:
            raise _start_error(failed[0], where)
        yield [f.result() if f.exception() is None else _start_error(f.exception(), where) for f in futures]
    finally:
        for holder, task in zip(holders, tasks, strict=True):
            if holder.ready.done():
                holder.stop.set()
            else:  # still starting (another server failed, or the run is being stopped): abandoned
                task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        for task in pending:  # still starting, or a close the SDK could not finish in time
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for holder in holders:  # read, so that asyncio does not report them as never retrieved
            if holder.ready.done() and not holder.ready.cancelled():
                holder.ready.exception()


def _start_error(error: BaseException | None, where: str) -> McpStartError:
    return error if isinstance(error, McpStartError) else McpStartError(where, f"{type(error).__name__}")


class _Holder:
    """One server's task: connects, hands the connection over, waits to be told to stop."""

    def __init__(self, server: McpServerConfig, where: str, environ: Mapping[str, str] | None) -> None:
        self.server = server
        self.where = where
        self.environ = environ
        self.ready: asyncio.Future[McpConnection] = asyncio.get_running_loop().create_future()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        try:
            async with connect_server(self.server, where=self.where, environ=self.environ) as connection:
                self.ready.set_result(connection)
                await self.stop.wait()
        except asyncio.CancelledError:
            self._failed(McpStartError(self.where, f"MCP server {self.server.name!r}: start abandoned"))
            raise
        except Exception as exc:  # never out of this task: it would cancel the whole run
            self._failed(exc if isinstance(exc, McpStartError) else McpStartError(
                self.where, f"MCP server {self.server.name!r} failed: {type(exc).__name__}"))

    def _failed(self, error: McpStartError) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)


def _tools(agent: AgentConfig, connections: list[McpConnection], warn: Warn) -> list[ToolConfig]:
    taken = {t.name: f"tools[{i}] of the agent file" for i, t in enumerate(agent.tools)}
    added: list[ToolConfig] = []
    for connection in connections:
        for tool in offered(connection, warn):
            if tool.name in taken:
                server = connection.server.name
                raise McpStartError(str(agent.path), (
                    f"MCP server {server!r} offers a tool named {tool.name!r}, the name of "
                    f"{taken[tool.name]}; "
                    f"leave it out with the server's allow list (mcp_servers.{server}.tools) or rename the "
                    "other tool"))
            taken[tool.name] = f"the tool of MCP server {connection.server.name!r}"
            added.append(tool_config(connection, tool))
    return added


def offered(connection: McpConnection, warn: Warn = _ignore) -> list[McpTool]:
    """The server's tools its allow list keeps and Nova can take (a warning for each left out)."""
    server = connection.server
    names = {t.name for t in connection.tools}
    if server.tools is not None:
        for name in server.tools:
            if name not in names:
                warn(f"MCP server {server.name!r} has no tool {name!r} (mcp_servers.{server.name}.tools); "
                     f"it offers: {', '.join(sorted(names)) or 'none'}")
    kept = []
    for tool in connection.tools:
        if server.tools is not None and tool.name not in server.tools:
            continue
        problem = unusable(tool)
        if problem is not None:
            warn(f"MCP server {server.name!r}: tool {tool.name!r} left out: {problem}")
            continue
        kept.append(tool)
    return kept


def unusable(tool: McpTool) -> str | None:
    """Why Nova cannot be offered `tool`, or None."""
    if not TOOL_NAME.match(tool.name):
        return "Nova takes tool names of 1-64 letters, digits, '_' or '-'"
    if tool.input_schema.get("type") != "object":
        return "its input schema is not an object schema"
    if schema_depth_path(tool.input_schema) is not None:
        return f"its input schema is nested more than {MAX_INPUT_SCHEMA_DEPTH} levels deep"
    try:
        tool_schema_validator(dict(tool.input_schema))
    except jsonschema.SchemaError as exc:
        return f"its input schema is not a valid JSON Schema: {exc.message}"
    return None


def tool_config(connection: McpConnection, tool: McpTool) -> ToolConfig:
    server = connection.server

    async def call(**arguments: Any) -> Any:
        return await connection.call(tool.name, arguments)

    call.__name__ = tool.name
    description = tool.description.strip() or f"{tool.name} (a tool of the MCP server {server.name})"
    return ToolConfig(name=tool.name, description=description, input_schema=tool.input_schema,
                      handler=f"mcp:{server.name}/{tool.name}", function=call, timeout_s=server.timeout_s)


async def connect_report(agent: AgentConfig, environ: Mapping[str, str] | None = None
                         ) -> tuple[list[str], bool]:
    """`check --connect`: lines describing each MCP server of `agent` and its tools, and whether
    every server could be started (and its tools offered without a name clash)."""
    where = str(agent.path)
    lines: list[str] = []
    ok = True
    taken = {t.name: "a tool of the agent file" for t in agent.tools}
    async with open_servers(agent.mcp_servers, where=where, environ=environ, fail_fast=False) as outcomes:
        for server, outcome in zip(agent.mcp_servers, outcomes, strict=True):
            if isinstance(outcome, McpStartError):
                ok = False
                lines.append(f"{where}: error: {outcome.detail}")
                continue
            warnings: list[str] = []
            kept = {t.name for t in offered(outcome, warnings.append)}
            lines.append(f"{where}: MCP server {server.name!r} ({describe_server(server)}): "
                         f"{len(outcome.tools)} tool(s), {len(kept)} offered to the model")
            for tool in outcome.tools:
                if tool.name in kept:
                    clash = taken.get(tool.name)
                    taken.setdefault(tool.name, f"a tool of MCP server {server.name!r}")
                    if clash is not None:
                        ok = False
                        lines.append(f"  error     {tool.name}: the name of {clash} (a run refuses to start)")
                        continue
                    lines.append(f"  offered   {tool.name}: {_first_line(tool.description)}")
                else:
                    lines.append(f"  left out  {tool.name}")
            lines.extend(f"  warning: {w}" for w in warnings)
    return lines, ok


def _first_line(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(no description)"
    return line if len(line) <= limit else line[:limit - 3] + "..."
