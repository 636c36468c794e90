"""`mcp_servers:` in the agent file: what the loader builds, and what `check` reports (no server starts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.loader import check_agent
from runner.config.model import McpServerConfig

REPO = Path(__file__).resolve().parents[3]


def agent(tmp_path: Path, servers: object) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps({
        "version": 1, "name": "t", "model": {"id": "amazon.nova-2-sonic-v1:0"}, "voice": "matthew",
        "system_prompt": "Hi.", "mcp_servers": servers}, indent=2))
    return path


def messages(path: Path) -> list[str]:
    return [f"{p.severity}: {p.message}" for p in check_agent(path)[1]]


def test_a_stdio_and_an_http_server_become_frozen_configs(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TOKEN", "s3cret-value")
    monkeypatch.setenv("T_TZ", "UTC")
    path = agent(tmp_path, {
        "time": {"command": "python3", "args": ["-m", "mcp_server_time"], "env": ["T_TZ"],
                 "tools": ["get_current_time"], "timeout_s": 3},
        "remote": {"url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer ${env:T_TOKEN}"}, "startup_timeout_s": 5}})
    config, problems = check_agent(path)
    assert problems == []
    assert config is not None
    time_server, remote = config.mcp_servers
    assert time_server == McpServerConfig(
        name="time", command="python3", args=("-m", "mcp_server_time"), env=(("T_TZ", "${env:T_TZ}"),),
        cwd=tmp_path.resolve(), tools=("get_current_time",), timeout_s=3.0)
    assert remote.transport == "http" and remote.url == "https://mcp.example.com/mcp"
    # The reference is kept, never the value: nothing downstream of the loader holds the secret.
    assert remote.headers == (("Authorization", "Bearer ${env:T_TOKEN}"),)
    assert remote.tools is None and remote.startup_timeout_s == 5.0
    assert "s3cret-value" not in repr(config)


def test_no_mcp_servers_is_an_empty_tuple(tmp_path: Path) -> None:
    config, _ = check_agent(agent(tmp_path, {}))
    assert config is not None and config.mcp_servers == ()


@pytest.mark.parametrize(("servers", "expected"), [
    ({"s": {"command": "x", "url": "https://h/mcp"}}, "use either command (a stdio server) or url"),
    ({"s": {"tools": ["a"]}}, "needs command (a stdio server) or url"),
    ({"s": {"url": "http://mcp.example.com/mcp"}}, "plain http:// sends the headers unencrypted"),
    ({"s": {"command": "x", "headers": {"A": "b"}}}, "mcp_servers.s.headers does not apply to a stdio"),
    ({"s": {"url": "https://h/mcp", "args": ["a"]}}, "mcp_servers.s.args does not apply to a streamable"),
    ({"s": {"command": "x", "timeout": 3}}, "unknown key 'timeout'"),
    ({"bad name": {"command": "x"}}, "is not a valid name"),
    ({"s": {"command": "x", "env": {"1X": "v"}}}, "is not a valid name"),
    ({"s": {"command": "x", "timeout_s": 0}}, "must be greater than 0"),
    ({"s": {"url": "https://h/mcp", "headers": {"A": "Bearer ${ENV:TOKEN}"}}},
     "mcp_servers.s.headers.A: '${ENV:TOKEN}' is not a valid reference"),
    ({"s": {"command": "x", "env": {"K": "${env:1X}"}}}, "mcp_servers.s.env.K: '${env:1X}' is not a valid"),
])
def test_mistakes_are_errors(tmp_path: Path, servers: object, expected: str) -> None:
    found = messages(agent(tmp_path, servers))
    assert any(m.startswith("error:") and expected in m for m in found), found


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/mcp", "http://localhost/mcp", "http://[::1]:9/mcp"])
def test_plain_http_is_fine_on_loopback(tmp_path: Path, url: str) -> None:
    assert messages(agent(tmp_path, {"s": {"url": url}})) == []


def test_allow_http_permits_another_host(tmp_path: Path) -> None:
    assert messages(agent(tmp_path, {"s": {"url": "http://10.0.0.5/mcp", "allow_http": True}})) == []


def test_missing_environment_variables_are_warnings_naming_them(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("T_MISSING_A", "T_MISSING_B", "T_MISSING_C"):
        monkeypatch.delenv(name, raising=False)
    path = agent(tmp_path, {
        "a": {"command": "x", "env": ["T_MISSING_A"]},
        "b": {"command": "x", "env": {"KEY": "k-${env:T_MISSING_B}"}},
        "c": {"url": "https://h/mcp", "headers": {"Authorization": "Bearer ${env:T_MISSING_C}"}}})
    config, problems = check_agent(path)
    assert config is not None  # warnings only: the file is valid
    found = [p.format() for p in problems]
    assert len(found) == 3, found
    for name in ("T_MISSING_A", "T_MISSING_B", "T_MISSING_C"):
        assert any("warning" in line and f"environment variable {name} is not set" in line for line in found)


def test_plain_check_starts_nothing(tmp_path: Path) -> None:
    """`check` without --connect never runs a server's command."""
    marker = tmp_path / "started"
    path = agent(tmp_path, {"s": {"command": sys.executable,
                                  "args": ["-c", f"open({str(marker)!r}, 'w').close()"]}})
    done = subprocess.run([sys.executable, "-m", "runner", "check", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "0 errors" in done.stdout
    assert not marker.exists()


def test_connect_and_json_cannot_be_combined(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "check", "--connect", "--json",
                           str(agent(tmp_path, {}))], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--connect prints text" in done.stderr
