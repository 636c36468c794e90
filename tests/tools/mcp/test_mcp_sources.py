"""runner.tools.sources against real MCP servers: the demo server (SDK, stdio and streamable HTTP) and
`mcp-server-time` from PyPI. Tools are listed and filtered, called through invoke_tool exactly as a
conversation calls them, and every failure (no start, death mid-call, slowness) is bounded."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import alive, children, demo_stdio, http_demo, time_server, wait_gone, write_agent

from runner.config.loader import load_agent
from runner.config.model import AgentConfig, ToolConfig
from runner.errors import RunnerError
from runner.tools.invoke import ToolOutcome, invoke_tool
from runner.tools.mcp import McpStartError
from runner.tools.sources import connect_report, open_tool_sources


def load(tmp_path: Path, servers: dict[str, dict[str, object]], **kw: Any) -> AgentConfig:
    return load_agent(write_agent(tmp_path, servers, **kw))


async def call(tool: ToolConfig, **arguments: object) -> ToolOutcome:
    return await invoke_tool(tool.function, arguments, input_schema=tool.input_schema,
                             timeout_s=tool.timeout_s, name=tool.name)


def result(outcome: ToolOutcome) -> Any:
    return json.loads(outcome.result_json)


def test_tools_are_listed_filtered_and_called(tmp_path: Path) -> None:
    agent = load(tmp_path, {"demo": demo_stdio(tools=["add", "lookup_order", "nothere"]),
                            "time": time_server()})
    warnings: list[str] = []

    async def main() -> None:
        async with open_tool_sources(agent, warn=warnings.append) as ready:
            tools = {t.name: t for t in ready.tools}
            assert sorted(tools) == ["add", "convert_time", "get_current_time", "lookup_order"]
            assert tools["add"].handler == "mcp:demo/add"
            assert tools["get_current_time"].handler == "mcp:time/get_current_time"
            # The server's own input schema is what Nova is offered.
            assert tools["add"].input_schema["required"] == ["a", "b"]
            assert tools["add"].description == "Add two integers."
            added = await call(tools["add"], a=2, b=40)
            assert added.ok and result(added) == {"result": 42}
            order = await call(tools["lookup_order"], order_id="A7")
            assert result(order) == {"order_id": "A7", "status": "shipped", "eta_days": 2}
            now = await call(tools["get_current_time"], timezone="Europe/Paris")
            assert now.ok and result(now)["timezone"] == "Europe/Paris", now
            bad_zone = await call(tools["get_current_time"], timezone="Mars/Olympus")
            assert not bad_zone.ok and "(MCP server 'time')" in (bad_zone.error or ""), bad_zone
            # Arguments the server's schema forbids never reach it.
            wrong = await call(tools["add"], a="two", b=1)
            assert not wrong.ok and "invalid arguments" in (wrong.error or "")

    asyncio.run(main())
    assert len(warnings) == 1 and "has no tool 'nothere'" in warnings[0], warnings
    assert children() == []


def test_env_values_reach_a_stdio_server_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_LEVEL", "3")
    monkeypatch.setenv("T_PASSED", "as-is")
    monkeypatch.setenv("T_NOT_PASSED", "x")
    env = {"DEMO_MODE": "level-${env:T_LEVEL}", "T_PASSED": "${env:T_PASSED}"}
    agent = load(tmp_path, {"demo": demo_stdio(env=env, tools=["env_value"])})

    async def main() -> list[Any]:
        async with open_tool_sources(agent) as ready:
            (tool,) = ready.tools
            names = ("DEMO_MODE", "T_PASSED", "T_NOT_PASSED")
            return [result(await call(tool, name=n))["result"] for n in names]

    # Only the declared variables: the server does not inherit the runner's environment.
    assert asyncio.run(main()) == ["level-3", "as-is", "(unset)"]


def test_a_slow_call_times_out_and_the_server_goes_on(tmp_path: Path) -> None:
    agent = load(tmp_path, {"demo": demo_stdio(tools=["slow", "add"], timeout_s=0.5)})

    async def main() -> None:
        async with open_tool_sources(agent) as ready:
            tools = {t.name: t for t in ready.tools}
            started = time.monotonic()
            slow = await call(tools["slow"], seconds=30)
            assert time.monotonic() - started < 5
            assert not slow.ok and slow.error == "timed out after 0.5 s"
            after = await call(tools["add"], a=1, b=1)
            assert after.ok and result(after) == {"result": 2}

    asyncio.run(main())


def test_a_server_that_dies_mid_call_is_an_error_result(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    agent = load(tmp_path, {"demo": demo_stdio(pid_file, tools=["crash", "add"], timeout_s=20)})

    async def main() -> None:
        async with open_tool_sources(agent) as ready:
            tools = {t.name: t for t in ready.tools}
            started = time.monotonic()
            crashed = await call(tools["crash"])
            assert time.monotonic() - started < 5  # not the 20 s timeout: the closed pipe is noticed
            assert not crashed.ok and "MCP server 'demo' has closed the connection" in (crashed.error or "")
            later = await call(tools["add"], a=1, b=1)
            assert not later.ok and "closed the connection" in (later.error or "")

    asyncio.run(main())
    assert not alive(int(pid_file.read_text()))


def test_a_tool_error_is_an_error_result(tmp_path: Path) -> None:
    agent = load(tmp_path, {"demo": demo_stdio(tools=["fail"])})

    async def main() -> ToolOutcome:
        async with open_tool_sources(agent) as ready:
            return await call(ready.tools[0], message="no such order")

    outcome = asyncio.run(main())
    assert not outcome.ok and "(MCP server 'demo')" in (outcome.error or ""), outcome


@pytest.mark.parametrize(("server", "expected"), [
    ({"command": "/nonexistent/mcp-server"},
     "could not be started: command not found: /nonexistent/mcp-server"),
    ({"command": "PY", "args": ["-c", "import sys; print('no config here', file=sys.stderr); sys.exit(4)"]},
     "closed the connection before answering (did it exit?)\n  its error output ended with:\n"
     "    no config here"),
    ({"command": "PY", "args": ["-c", "import time; time.sleep(60)"], "startup_timeout_s": 1},
     "did not start and list its tools within 1 s (startup_timeout_s)"),
])
def test_a_server_that_cannot_start_is_a_clear_error(tmp_path: Path, server: dict[str, object],
                                                     expected: str) -> None:
    import sys

    server = {k: (sys.executable if v == "PY" else v) for k, v in server.items()}
    agent = load(tmp_path, {"time": time_server(), "bad": server})

    async def main() -> None:
        async with open_tool_sources(agent):
            raise AssertionError("started")

    started = time.monotonic()
    with pytest.raises(McpStartError) as caught:
        asyncio.run(main())
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert message.startswith(f"{agent.path}: MCP server 'bad' ("), message
    assert expected in message
    assert children() == []  # the server that did start was stopped too


def test_an_unset_variable_stops_the_start_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_ABSENT", raising=False)
    agent = load(tmp_path, {"demo": demo_stdio(env={"KEY": "${env:T_ABSENT}"})})

    async def main() -> None:
        async with open_tool_sources(agent):
            pass

    with pytest.raises(McpStartError, match=r"env\.KEY needs the environment variable T_ABSENT"):
        asyncio.run(main())


def test_a_name_clash_with_a_declared_tool_is_refused(tmp_path: Path) -> None:
    declared = {"name": "add", "description": "Adds.", "handler": "builtin:calculator",
                "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}},
                                 "required": ["expression"]}}
    agent = load(tmp_path, {"demo": demo_stdio()}, tools=[declared])

    async def main() -> None:
        async with open_tool_sources(agent):
            raise AssertionError("started")

    with pytest.raises(RunnerError, match=r"'demo' offers a tool named 'add', the name of tools\[0\]"):
        asyncio.run(main())
    assert children() == []
    # The allow list is the way out.
    allowed = replace(agent, mcp_servers=(replace(agent.mcp_servers[0], tools=("lookup_order",)),))

    async def names() -> list[str]:
        async with open_tool_sources(allowed) as ready:
            return [t.name for t in ready.tools]

    assert asyncio.run(names()) == ["add", "lookup_order"]


def test_streamable_http_with_a_secret_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "tok-6b1f0c9e2d"
    with http_demo(token) as url:
        headers = {"Authorization": "Bearer ${env:T_MCP_TOKEN}"}
        web = {"url": url, "headers": headers, "tools": ["add"], "startup_timeout_s": 15}
        agent = load(tmp_path, {"web": web})

        async def main() -> Any:
            async with open_tool_sources(agent) as ready:
                (tool,) = ready.tools
                assert tool.handler == "mcp:web/add"
                return result(await call(tool, a=20, b=22))

        monkeypatch.setenv("T_MCP_TOKEN", token)
        assert asyncio.run(main()) == {"result": 42}
        # A token the server refuses: a start error that never shows the value sent.
        monkeypatch.setenv("T_MCP_TOKEN", "wrong-0a9d8c7b")
        with pytest.raises(McpStartError) as caught:
            asyncio.run(main())
        message = str(caught.value)
        assert "MCP server 'web'" in message and "wrong-0a9d8c7b" not in message, message
        # Closed without waiting on a server that is gone.
        monkeypatch.setenv("T_MCP_TOKEN", token)


def test_connect_report_lists_servers_tools_and_failures(tmp_path: Path) -> None:
    agent = load(tmp_path, {"demo": demo_stdio(tools=["add", "ghost"]), "time": time_server(),
                            "broken": {"command": "/nonexistent/mcp-server"}})
    lines, ok = asyncio.run(connect_report(agent))
    text = "\n".join(lines)
    assert not ok
    assert "MCP server 'demo' (stdio: " in text and "6 tool(s), 1 offered to the model" in text
    assert "  offered   add: Add two integers." in text
    assert "  left out  slow" in text
    assert "has no tool 'ghost'" in text
    assert "MCP server 'time'" in text and "  offered   get_current_time:" in text
    assert f"{agent.path}: error: MCP server 'broken' (stdio: /nonexistent/mcp-server) could not be " \
           "started" in text
    assert children() == []


def test_servers_are_stopped_when_the_run_is_cancelled(tmp_path: Path) -> None:
    """A run cancelled in the middle of a call (what Ctrl-C does to a run's tasks) stops its
    servers within the bound, and leaves no process."""
    pid_file = tmp_path / "pid"
    agent = load(tmp_path, {"demo": demo_stdio(pid_file, tools=["slow"], timeout_s=60)})
    timings: dict[str, float] = {}

    async def main() -> None:
        async with open_tool_sources(agent) as ready:
            task = asyncio.create_task(call(ready.tools[0], seconds=60))
            await asyncio.sleep(0.5)
            timings["cancel"] = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        timings["closed"] = time.monotonic()

    asyncio.run(main())
    pid = int(pid_file.read_text())
    assert timings["closed"] - timings["cancel"] < 2.0, timings
    assert wait_gone(pid, 2.0)
    assert children() == []


def test_an_http_server_that_dies_mid_call_is_an_error_result(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_MCP_TOKEN", "tok-1")
    with http_demo("tok-1") as url:
        web = {"url": url, "headers": {"Authorization": "Bearer ${env:T_MCP_TOKEN}"},
               "tools": ["crash", "add"], "timeout_s": 10}
        agent = load(tmp_path, {"web": web})
        timings: dict[str, float] = {}

        async def main() -> tuple[ToolOutcome, ToolOutcome]:
            async with open_tool_sources(agent) as ready:
                tools = {t.name: t for t in ready.tools}
                crashed = await call(tools["crash"])
                later = await call(tools["add"], a=1, b=2)
                timings["leaving"] = time.monotonic()
            timings["closed"] = time.monotonic()
            return crashed, later

        started = time.monotonic()
        crashed, later = asyncio.run(main())
    assert not crashed.ok and "MCP server 'web'" in (crashed.error or ""), crashed
    assert not later.ok and "MCP server 'web'" in (later.error or ""), later
    assert timings["leaving"] - started < 25  # two errors, not two hangs past the calls' timeout
    assert timings["closed"] - timings["leaving"] < 2.0


def test_a_command_is_found_beside_the_runners_python(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`command: mcp-server-time` (the console script pip put in the venv) works with a PATH that
    does not have the venv's bin folder, as when `.venv/bin/agent-run` runs without activation."""
    import os
    import sys

    bin_dir = str(Path(sys.executable).parent)
    if not (Path(bin_dir) / "mcp-server-time").exists():
        pytest.skip("mcp-server-time's console script is not beside this Python")
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    agent = load(tmp_path, {"time": {"command": "mcp-server-time", "tools": ["get_current_time"]}})

    async def main() -> Any:
        async with open_tool_sources(agent) as ready:
            return result(await call(ready.tools[0], timezone="Etc/UTC"))

    assert asyncio.run(main())["timezone"] == "Etc/UTC"
