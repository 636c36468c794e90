"""MCP tools through the CLI, as a user runs them: `agent-run AGENT.yaml --emulate --text` (a real
subprocess, the real SDK over TLS against the emulator, whose scenario makes the model call the MCP
tools), a start that fails, a stop while a call runs, and `check --connect`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_helpers import HERE, REPO, alive, demo_stdio, time_server, wait_gone, write_agent

sys.path.insert(0, str(REPO / "tests" / "e2e"))
from e2e_helpers import Finished, Run, base_env

DATA = HERE / "data"
SECRET = "s3cr3t-7f2a9c41"
LINES = ["order please", "time in Tokyo", "slow please", "add please", "crash please", "again please"]


def run_env(**extra: str) -> dict[str, str]:
    return base_env(PYTHONPATH=str(REPO), T_MCP_SECRET=SECRET, **extra)


def start(args: list[str | Path], transcript: Path, *, lines: list[str] | None = None,
          env: dict[str, str] | None = None) -> Run:
    run = Run(args, transcript=transcript, env=env or run_env(), stdin=subprocess.PIPE)
    assert run.proc.stdin is not None
    if lines is not None:  # else the caller keeps typing
        run.proc.stdin.write("".join(f"{line}\n" for line in lines))
        run.proc.stdin.close()
        run.proc.stdin = None
    return run


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Finished, Path]]:
    tmp = tmp_path_factory.mktemp("mcp_run")
    pid_file = tmp / "demo.pid"
    agent = write_agent(tmp, {
        # The secret goes to the server's environment only; the server never echoes it.
        "demo": demo_stdio(pid_file, env={"API_KEY": "${env:T_MCP_SECRET}"}, timeout_s=1,
                           tools=["lookup_order", "slow", "add", "crash"]),
        "time": time_server(tools=["get_current_time"])})
    transcript = tmp / "t.jsonl"
    run = start([agent, "--emulate", DATA / "mcp.scenario.yaml", "--text", "--mute",
                 "--transcript", transcript], transcript, lines=LINES)
    try:
        yield run.finish(timeout_s=120), pid_file
    finally:
        run.kill()


def test_the_model_calls_mcp_tools_through_a_run(conversation: tuple[Finished, Path]) -> None:
    done, _ = conversation
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr + done.stdout
    assert "MCP server demo: add, lookup_order, slow, crash" in done.stdout  # in the server's order
    assert "MCP server time: get_current_time" in done.stdout
    calls = [(e["name"], e["input"]) for e in done.entries("tool_call")]
    assert calls == [("lookup_order", {"order_id": "A7"}), ("get_current_time", {"timezone": "Asia/Tokyo"}),
                     ("slow", {"seconds": 30}), ("add", {"a": 20, "b": 22}), ("crash", {}),
                     ("add", {"a": 1, "b": 1})], done.describe()
    answers = [e["text"] for e in done.entries("assistant")]
    assert answers[0] == "Order A7 is shipped."
    assert answers[1].startswith("In Asia/Tokyo it is ") and answers[1].endswith("day.")
    # The slow call timed out (timeout_s: 1), and the conversation went on with the same server.
    assert answers[2:] == ["The slow tool failed.", "The sum is 42.", "The server crashed.", "Still down."]
    results = done.entries("tool_result")
    assert results[2]["error"] == "timed out after 1 s"
    assert "MCP server 'demo' has closed the connection" in results[4]["error"]


def test_the_server_process_is_gone_after_the_run(conversation: tuple[Finished, Path]) -> None:
    # It crashed on purpose mid-run here; the stop test below covers a live server at the end.
    _, pid_file = conversation
    assert not alive(int(pid_file.read_text()))


def test_the_secret_is_in_no_output(conversation: tuple[Finished, Path]) -> None:
    done, _ = conversation
    assert SECRET not in done.stdout + done.stderr
    assert SECRET not in str(done.transcript)


def test_a_server_that_fails_to_start_stops_the_run_clearly(tmp_path: Path) -> None:
    """A server that exits at once (showing the secret it was given on its stderr): exit 2, one
    error naming the agent file and the server, the server's own words, the secret redacted."""
    agent = write_agent(tmp_path, {"time": time_server(), "bad": {
        "command": sys.executable, "env": {"API_KEY": "${env:T_MCP_SECRET}"},
        "args": ["-c", "import os, sys; print('rejected key', os.environ['API_KEY'], file=sys.stderr); "
                       "sys.exit(2)"]}})
    transcript = tmp_path / "t.jsonl"
    done = start([agent, "--emulate", "--text", "--mute", "--transcript", transcript], transcript,
                 lines=["hello"]).finish(timeout_s=60)
    assert done.returncode == 2, done.describe()
    assert "Traceback" not in done.stderr
    assert f"agent-run: error: {agent}: MCP server 'bad' (stdio: " in done.stderr, done.stderr
    assert "closed the connection before answering" in done.stderr
    assert "rejected key ${env:T_MCP_SECRET}" in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_a_missing_variable_stops_the_run_naming_it(tmp_path: Path) -> None:
    agent = write_agent(tmp_path, {"demo": demo_stdio(env={"API_KEY": "${env:T_MCP_UNSET}"})})
    transcript = tmp_path / "t.jsonl"
    done = start([agent, "--emulate", "--text", "--mute", "--transcript", transcript], transcript,
                 lines=["hello"]).finish(timeout_s=60)
    assert done.returncode == 2, done.describe()
    assert "agent-run: error: environment variable(s) not set: T_MCP_UNSET; nothing was started\n" \
           f"  {agent}:" in done.stderr
    assert ": T_MCP_UNSET, used by MCP server demo\n" in done.stderr
    assert "emulator:" not in done.stdout  # refused before anything started


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_asked_to_stop_during_a_call_stops_and_leaves_no_server(tmp_path: Path, signum: int) -> None:
    pid_file = tmp_path / "demo.pid"
    agent = write_agent(tmp_path, {"demo": demo_stdio(pid_file, timeout_s=120, tools=["slow"])})
    transcript = tmp_path / "t.jsonl"
    run = start([agent, "--emulate", DATA / "slow.scenario.yaml", "--text", "--mute",
                 "--transcript", transcript], transcript)
    try:
        assert run.proc.stdin is not None
        run.proc.stdin.write("slow please\n")
        run.proc.stdin.flush()
        run.wait_for_line("-> tool slow", timeout_s=60)
        time.sleep(0.3)  # the call is in the server now
        pid = int(pid_file.read_text())
        assert alive(pid)
        asked = time.monotonic()
        run.proc.send_signal(signum)
        run.proc.wait(timeout=30)
        stopped = time.monotonic() - asked
        assert not alive(pid) or wait_gone(pid, 0.5)
        done = run.finish()
    finally:
        run.kill()
    assert done.returncode == 128 + signum, done.describe()
    # The bound is 2 s (about 1.4 s measured on a quiet machine, process exit included; the
    # servers' own close is held to 2 s in test_mcp_sources); the margin is for a loaded machine.
    assert stopped < 4.0, f"stopped {stopped:.2f} s after the signal"


def test_check_connect_lists_tools_and_unreachable_servers(tmp_path: Path) -> None:
    agent = write_agent(tmp_path, {"demo": demo_stdio(tools=["add", "ghost"]), "time": time_server(),
                                   "broken": {"command": "/nonexistent/mcp-server"}})
    done = subprocess.run([sys.executable, "-m", "runner", "check", "--connect", str(agent)], cwd=REPO,
                          env=run_env(), capture_output=True, text=True, timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "1 file checked: 0 errors, 0 warnings" in out
    assert f"{agent}: MCP server 'demo' (stdio: " in out and "6 tool(s), 1 offered to the model" in out
    assert "  offered   add: Add two integers." in out and "  left out  crash" in out
    assert "has no tool 'ghost'" in out
    assert f"{agent}: MCP server 'time' (stdio: {sys.executable} -m mcp_server_time): " \
           "2 tool(s), 2 offered" in out
    assert f"{agent}: error: MCP server 'broken' (stdio: /nonexistent/mcp-server) could not be started: " \
           "command not found" in out
    assert "Traceback" not in done.stderr


def test_check_connect_succeeds_when_every_server_starts(tmp_path: Path) -> None:
    agent = write_agent(tmp_path, {"time": time_server()})
    done = subprocess.run([sys.executable, "-m", "runner", "check", "--connect", str(agent)], cwd=REPO,
                          env=run_env(), capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  offered   get_current_time: " in done.stdout


def test_agent_run_test_cases_call_mcp_tools(tmp_path: Path) -> None:
    """`agent-run test`: a case whose model side calls an MCP tool, and an expectation on the call."""
    write_agent(tmp_path, {"demo": demo_stdio(tools=["lookup_order"])})
    tests = tmp_path / "agent.test.yaml"
    tests.write_text("""
version: 1
agent: agent.yaml
model:
  turns:
    - assistant:
        - tool: lookup_order
          input: {order_id: "A7"}
        - say: "Order {{ tool_result.order_id }} is {{ tool_result.status }}."
cases:
  - name: looks an order up through the MCP server
    targets: [emulator]
    turns:
      - user: Where is order A7?
        expect:
          - tool_called: {name: lookup_order, args: {order_id: "A7"}}
          - says: order A7 is shipped
""")
    done = subprocess.run([sys.executable, "-m", "runner", "test", str(tests)], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout


def test_a_signal_while_a_server_is_starting_stops_the_run_and_the_server(tmp_path: Path) -> None:
    pid_file = tmp_path / "hang.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    agent = write_agent(tmp_path, {"hang": {"command": sys.executable, "args": ["-c", code],
                                            "startup_timeout_s": 60}})
    transcript = tmp_path / "t.jsonl"
    run = start([agent, "--emulate", "--text", "--mute", "--transcript", transcript], transcript)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and run.proc.poll() is None, "the server was not started"
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        asked = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(timeout=30)
        stopped = time.monotonic() - asked
        done = run.finish()
    finally:
        run.kill()
    assert done.returncode == 130, done.describe()
    assert "Traceback" not in done.stderr
    assert wait_gone(pid, 1.0)
    assert stopped < 4.0, f"stopped {stopped:.2f} s after the signal"  # as above
