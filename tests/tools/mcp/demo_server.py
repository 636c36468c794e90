"""An MCP server for the tests, written with the SDK (MCPServer, mcp 2's FastMCP).

`python demo_server.py stdio [PID_FILE]` serves over stdin/stdout (writing its process id to PID_FILE,
so a test can check it is gone after the run); `python demo_server.py http PORT TOKEN` serves
streamable HTTP on 127.0.0.1:PORT/mcp and refuses (401) any request without `Authorization: Bearer TOKEN`.
Its tools cover what the runner must survive: a slow tool, one that kills the server mid-call, and
one that reports an environment variable (to check what the runner passes to a stdio server).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer

server = MCPServer("demo")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def lookup_order(order_id: str) -> dict[str, Any]:
    """The status of an order."""
    return {"order_id": order_id, "status": "shipped", "eta_days": 2}


@server.tool()
def env_value(name: str) -> str:
    """The value of an environment variable of this server's process, or '(unset)'."""
    return os.environ.get(name, "(unset)")


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after `seconds`."""
    await asyncio.sleep(seconds)
    return "done"


@server.tool()
def crash() -> str:
    """Exit the server process at once, in the middle of the call."""
    os._exit(3)


@server.tool()
def fail(message: str) -> str:
    """Raise an error with `message` (the server reports it as an error result)."""
    raise ValueError(message)


def _http(port: int, token: str) -> None:
    import uvicorn

    app = server.streamable_http_app()
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        _http(int(sys.argv[2]), sys.argv[3])
    else:
        if len(sys.argv) > 2:
            with open(sys.argv[2], "w") as pid_file:
                pid_file.write(str(os.getpid()))
        server.run("stdio")
