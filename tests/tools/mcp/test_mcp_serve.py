"""MCP tools under `agent-run serve`: a worker starts its agents' MCP servers once, at start, and its
conversations share them (a real serve process, the emulator, the demo MCP server over stdio); the
servers stop with the worker; a server that cannot start stops `serve` before it takes a caller."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from mcp_helpers import REPO, alive, demo_stdio, wait_gone, write_agent

sys.path.insert(0, str(REPO))
from tests.e2e.e2e_helpers import base_env
from tests.serve.serve_helpers import ServeProcess

SCENARIO = """\
description: every typed turn adds two numbers with the MCP demo server's tool
turns:
  - assistant:
      - tool: add
        input: {a: 20, b: 22}
      - say: "The sum is {{ tool_result.result }}."
"""


def _invoke(server: ServeProcess, prompt: str) -> dict[str, object]:
    body = json.dumps({"prompt": prompt}).encode()
    request = urllib.request.Request(server.base + "/invocations", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def test_served_conversations_share_the_workers_mcp_server(tmp_path: Path) -> None:
    pid_file = tmp_path / "demo.pid"
    agent = write_agent(tmp_path, {"demo": demo_stdio(pid_file, tools=["add"])})
    scenario = tmp_path / "add.scenario.yaml"
    scenario.write_text(SCENARIO)
    with ServeProcess(tmp_path, agent=agent, scenario=scenario, env={"PYTHONPATH": str(REPO)}) as server:
        server.wait_ready()
        pid = int(pid_file.read_text())  # started before the worker was ready
        for _ in range(2):
            result = _invoke(server, "add please")
            assert result["reply"] == "The sum is 42.", (result, server.stderr())
            assert result["tool_calls"] == [{"name": "add", "input": {"a": 20, "b": 22}, "ok": True}]
            assert int(pid_file.read_text()) == pid and alive(pid)  # the same server process
        server.wait_idle()
        assert server.stop() == 143
    assert wait_gone(pid), "the MCP server outlived the worker"
    assert "MCP server demo: add" in server.stderr()


def test_a_server_that_cannot_start_stops_serve_clearly(tmp_path: Path) -> None:
    agent = write_agent(tmp_path, {"broken": {"command": "no-such-mcp-server-command"}})
    done = subprocess.run([sys.executable, "-m", "runner", "serve", str(agent), "--emulate", "--port", "0"],
                          cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "broken" in done.stderr and "Traceback" not in done.stderr
