"""The reference MCP server from npm (`@modelcontextprotocol/server-everything`, Node), which
`bash scripts/dev` installs into .mcp-node when npm is there: another SDK's server, over stdio."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import REPO, children, write_agent

from runner.config.loader import load_agent
from runner.config.model import ToolConfig
from runner.tools.invoke import invoke_tool
from runner.tools.sources import open_tool_sources

SERVER = REPO / ".mcp-node" / "node_modules" / ".bin" / "mcp-server-everything"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed"),
    pytest.mark.skipif(not SERVER.exists(), reason=f"{SERVER} is missing: `bash scripts/dev` installs it "
                                                   "with npm (its set-up found no npm, or npm failed)"),
]


async def call(tool: ToolConfig, **arguments: Any) -> Any:
    outcome = await invoke_tool(tool.function, arguments, input_schema=tool.input_schema,
                                timeout_s=tool.timeout_s, name=tool.name)
    assert outcome.ok, outcome
    return json.loads(outcome.result_json)


def test_the_npm_server_tools_are_listed_and_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_NOT_DECLARED", "runner-only")
    monkeypatch.setenv("T_DECLARED", "for-the-server")
    agent = load_agent(write_agent(tmp_path, {"everything": {
        "command": str(SERVER), "args": ["stdio"], "env": ["T_DECLARED"],
        "tools": ["echo", "get-sum", "get-env", "get-tiny-image"]}}))

    async def main() -> list[Any]:
        async with open_tool_sources(agent) as ready:
            tools = {t.name: t for t in ready.tools}
            assert sorted(tools) == ["echo", "get-env", "get-sum", "get-tiny-image"]
            assert tools["get-sum"].handler == "mcp:everything/get-sum"
            return [await call(tools["echo"], message="hello there"),
                    await call(tools["get-sum"], a=2, b=40),
                    await call(tools["get-env"]),
                    await call(tools["get-tiny-image"])]

    echo, total, env, image = asyncio.run(main())
    assert "hello there" in json.dumps(echo)
    assert "42" in json.dumps(total)
    # The server sees the variables the agent file passes, not the rest of the runner's environment.
    shown = json.dumps(env)
    assert "for-the-server" in shown and "runner-only" not in shown
    # An image is named, never sent to a voice model as base64.
    assert "image/png" in json.dumps(image) and len(json.dumps(image)) < 2000
    assert children() == []
