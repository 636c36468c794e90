"""An unset `${env:NAME}` stops `agent-run test` before anything starts, with the very refusal of
`agent-run AGENT` and `agent-run serve` (runner.config.secrets.unset_refusal): each variable by name
and each place that names it as FILE:LINE:COL, never a value. End to end: the real CLI as a
subprocess, a test file with a real service (which writes its pid when it starts, so the test can
tell it never did), an HTTP tool and an MCP server that reference secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "tok-Zq81-never-printed"

AGENT = """\
version: 1
name: secret-user
voice: matthew
model: {id: amazon.nova-2-sonic-v1:0, region: us-east-1}
vars: {api: "http://127.0.0.1:8000"}
system_prompt: You look things up.
tools:
  - name: lookup
    description: An item by its id.
    input_schema: {type: object, properties: {id: {type: string}}, required: [id]}
    timeout_s: 5
    http:
      url: "{vars.api}/items/{id}.json"
      headers: {Authorization: "Bearer ${env:T_REFUSAL_TOKEN}"}
"""

MCP = """\
mcp_servers:
  crm:
    command: python3
    args: [-c, "pass"]
    env: {CRM_KEY: "${env:T_REFUSAL_MCP}"}
"""

# A static file server that first writes its pid (argv: port, pid file).
SERVER = """\
import functools, http.server, os, sys
open(sys.argv[2], "w").write(str(os.getpid()))
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="data")
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""

TESTS = """\
version: 1
agent: agent.yaml
services:
  api:
    command: [python, server.py, "{port}", pid.txt]
    ready: http
vars: {api: "{services.api.url}"}
model:
  turns:
    - assistant:
        - tool: lookup
          input: {id: "7"}
        - say: "Item {{ tool_result.name }} costs {{ tool_result.price }}."
cases:
  - name: mocked lookup
    mocks:
      lookup: {result: {name: lamp, price: 12}}
    turns:
      - user: How much is item 7?
        expect:
          - says: item lamp costs 12
  - name: real lookup
    turns:
      - user: How much is item 7?
        expect:
          - says: item lamp costs 12
"""


def env(**extra: str) -> dict[str, str]:
    """This environment minus anything AWS and the test's own variables, plus `extra`."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "T_REFUSAL_")) and k != "SSL_CERT_FILE"}
    clean["PYTHONUNBUFFERED"] = "1"
    clean["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**clean, **extra}


def agent_run(*args: str | Path, environ: dict[str, str], module: str = "runner", timeout: float = 90
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=timeout, check=False)


def folder(tmp_path: Path, *, mcp: bool) -> Path:
    """The agent, its service and test file in `tmp_path`; the test file's path."""
    (tmp_path / "agent.yaml").write_text(AGENT + (MCP if mcp else ""), encoding="utf-8")
    (tmp_path / "server.py").write_text(SERVER, encoding="utf-8")
    (tmp_path / "data" / "items").mkdir(parents=True)
    (tmp_path / "data" / "items" / "7.json").write_text('{"name": "lamp", "price": 12}', encoding="utf-8")
    tests = tmp_path / "secret.test.yaml"
    tests.write_text(TESTS, encoding="utf-8")
    return tests


def refusal(output: str, prefix: str) -> str:
    """The refusal's text after the command's own `PREFIX error: ` (empty when there is none)."""
    start = output.find(f"{prefix} error: environment variable(s) not set")
    return output[start + len(f"{prefix} error: "):] if start != -1 else ""


def test_agent_run_test_refuses_before_starting_anything(tmp_path: Path) -> None:
    tests = folder(tmp_path, mcp=True)
    agent = tmp_path / "agent.yaml"
    done = agent_run("test", tests, environ=env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert refusal(done.stdout, "agent-run test:") == (
        "environment variable(s) not set: T_REFUSAL_TOKEN, T_REFUSAL_MCP; nothing was started\n"
        f"  {agent}:14:17: T_REFUSAL_TOKEN, used by tool lookup\n"
        f"  {agent}:19:11: T_REFUSAL_MCP, used by MCP server crm\n"
        "Set them before starting (export NAME=...); `agent-run check` lists them\n")
    assert not (tmp_path / "pid.txt").exists(), "the service was started"
    assert "PASS" not in done.stdout and "FAIL" not in done.stdout
    # The refusal alone: not also `check`'s warnings about the same variables above it.
    assert done.stdout.startswith("agent-run test: error: environment variable(s) not set"), done.stdout


def test_run_serve_and_test_refuse_alike_and_never_show_a_set_secret(tmp_path: Path) -> None:
    # The HTTP tool's variable is set (to a secret), the MCP server's is not.
    tests = folder(tmp_path, mcp=True)
    agent = tmp_path / "agent.yaml"
    environ = env(T_REFUSAL_TOKEN=SECRET)
    runs = [("agent-run test:", agent_run("test", tests, "-v", environ=environ)),
            ("agent-run:", agent_run(agent, "--emulate", "--text", "--mute", environ=environ)),
            ("agent-run:", agent_run("serve", agent, "--emulate", "--port", "0", "-v", environ=environ))]
    expected = ("environment variable(s) not set: T_REFUSAL_MCP; nothing was started\n"
                f"  {agent}:19:11: T_REFUSAL_MCP, used by MCP server crm\n"
                "Set them before starting (export NAME=...); `agent-run check` lists them\n")
    for prefix, done in runs:
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "Traceback" not in output
        assert SECRET not in output
        assert refusal(output, prefix) == expected, output
    assert not (tmp_path / "pid.txt").exists(), "the service was started"


def test_a_tool_the_cases_mock_needs_no_variable(tmp_path: Path) -> None:
    # No case calls the real tool: nothing needs its secret, and the case runs.
    tests = folder(tmp_path, mcp=False)
    mocked = agent_run("test", tests, "-k", "mocked", environ=env())
    assert mocked.returncode == 0, mocked.stdout + mocked.stderr
    assert "T_REFUSAL_TOKEN is not set" in mocked.stdout  # check's warning, for a run of the agent
    assert f"PASS  {tests}: mocked lookup (" in mocked.stdout
    # A case that calls it needs it.
    both = agent_run("test", tests, environ=env())
    assert both.returncode == 2, both.stdout + both.stderr
    assert refusal(both.stdout, "agent-run test:").startswith(
        f"environment variable(s) not set: T_REFUSAL_TOKEN; nothing was started\n"
        f"  {tmp_path / 'agent.yaml'}:14:17: T_REFUSAL_TOKEN, used by tool lookup\n")
    assert "PASS" not in both.stdout


@pytest.mark.parametrize("token", [None, SECRET])
def test_pytest_fails_only_the_cases_that_need_the_variable(tmp_path: Path, token: str | None) -> None:
    tests = folder(tmp_path, mcp=False)
    environ = env() if token is None else env(T_REFUSAL_TOKEN=token)
    done = agent_run(tests, "-p", "runner.testing.plugin", "-p", "no:cacheprovider", "-q", environ=environ,
                     module="pytest")
    output = done.stdout + done.stderr
    assert SECRET not in output
    if token is None:
        assert done.returncode == 1, output
        assert "1 failed, 1 passed" in output
        assert "environment variable(s) not set: T_REFUSAL_TOKEN; nothing was started" in output
    else:  # set: both cases run against the service, the real one sending the secret
        assert done.returncode == 0, output
        assert "2 passed" in output
