"""Shared pieces of the MCP tests: the servers (tests/tools/mcp/demo_server.py, written with the SDK,
and `mcp-server-time` from PyPI), agent files naming them, and checks that their processes are gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DEMO = HERE / "demo_server.py"
PY = sys.executable

pytest.importorskip("mcp", reason="the mcp extra is not installed (bash scripts/dev installs it)")
pytest.importorskip("mcp_server_time", reason="mcp-server-time (dev extra) is not installed")


def demo_stdio(pid_file: Path | None = None, **extra: object) -> dict[str, object]:
    """An mcp_servers entry for the demo server over stdio."""
    args = [str(DEMO), "stdio", *([str(pid_file)] if pid_file is not None else [])]
    return {"command": PY, "args": args, **extra}


def time_server(**extra: object) -> dict[str, object]:
    return {"command": PY, "args": ["-m", "mcp_server_time"], **extra}


def write_agent(folder: Path, servers: dict[str, dict[str, object]], *, tools: list[object] | None = None,
                name: str = "agent.yaml") -> Path:
    """An agent file (JSON is YAML) with `servers` as its mcp_servers."""
    data: dict[str, object] = {
        "version": 1, "name": "mcp test", "model": {"id": "amazon.nova-2-sonic-v1:0"}, "voice": "matthew",
        "system_prompt": "You help.", "mcp_servers": servers}
    if tools is not None:
        data["tools"] = tools
    path = folder / name
    path.write_text(json.dumps(data, indent=2))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def http_demo(token: str) -> Iterator[str]:
    """The demo server on streamable HTTP at 127.0.0.1 (a real uvicorn process); yields its URL."""
    port = free_port()
    proc = subprocess.Popen([PY, str(DEMO), "http", str(port), token], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    error = proc.communicate()[1]
                    raise AssertionError(f"the HTTP demo server did not start: {error}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def children(pid: int | None = None) -> list[int]:
    """Live processes whose parent is `pid` (this process by default)."""
    parent = os.getpid() if pid is None else pid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(stat[1]) == parent and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
