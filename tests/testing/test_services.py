"""`services:` in test files, end to end: the real `agent-run test` (and pytest) as a subprocess
starting real local servers: one that serves an HTTP tool's API, one that exits at once, one that
never listens, one that is not a program, and Ctrl-C in the middle of a case. Each server writes its
pid to a file so the test can check it is gone afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.testing.load import check_tests

REPO = Path(__file__).resolve().parents[2]

AGENT = """\
version: 1
name: api-user
voice: matthew
model: {id: amazon.nova-2-sonic-v1:0, region: us-east-1}
vars: {api: "http://127.0.0.1:8000"}
system_prompt: You look things up.
tools:
  - name: lookup
    description: An item by its id.
    input_schema: {type: object, properties: {id: {type: string}}, required: [id]}
    timeout_s: 5
    http: {url: "{vars.api}/items/{id}.json"}
"""

# A static file server that first writes its pid (argv: port, pid file).
SERVER = """\
import functools, http.server, os, sys
open(sys.argv[2], "w").write(str(os.getpid()))
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="data")
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""

# Writes its pid, says something on stderr, then does what argv[2] says.
MISBEHAVING = """\
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
sys.stderr.write("booting the api\\nfatal: no database configured\\n"); sys.stderr.flush()
if sys.argv[2] == "exit":
    sys.exit(3)
time.sleep(120)  # never listens
"""

TESTS = """\
version: 1
agent: agent.yaml
services:
  api:
{service}
vars: {{api: "{{services.api.url}}"}}
model:
  turns:
    - assistant:
        - tool: lookup
          input: {{id: "7"}}
        - say: "Item {{{{ tool_result.name }}}} costs {{{{ tool_result.price }}}}."
cases:
  - name: looks an item up
    turns:
      - user: How much is item 7?
        expect:
          - tool_result: {{name: lookup, contains: '"price": 12'}}
          - says: item lamp costs 12
"""

SERVE = '    command: [python, server.py, "{port}", pid.txt]\n    ready: http'


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean.pop("SSL_CERT_FILE", None)
    clean["PYTHONUNBUFFERED"] = "1"
    clean["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return clean


def folder(tmp_path: Path, service: str) -> Path:
    (tmp_path / "agent.yaml").write_text(AGENT)
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "misbehaving.py").write_text(MISBEHAVING)
    (tmp_path / "data" / "items").mkdir(parents=True)
    (tmp_path / "data" / "items" / "7.json").write_text('{"name": "lamp", "price": 12}')
    tests = tmp_path / "api.test.yaml"
    tests.write_text(TESTS.format(service=service))
    return tests


def agent_run(*args: str | Path, module: str = "runner", timeout: float = 90
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def gone(pid_file: Path, within_s: float = 5.0) -> bool:
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_service_serves_the_agents_http_tool_and_stops_after(tmp_path: Path) -> None:
    tests = folder(tmp_path, SERVE)
    done = agent_run("test", tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "1 case: 1 passed" in done.stdout.replace("cases", "case")
    assert gone(tmp_path / "pid.txt")


def test_pytest_starts_the_services_too(tmp_path: Path) -> None:
    tests = folder(tmp_path, SERVE)
    done = agent_run(tests, "-p", "runner.testing.plugin", "-p", "no:cacheprovider", "-q", module="pytest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert gone(tmp_path / "pid.txt")


def test_a_service_that_exits_is_a_clear_error_with_its_output(tmp_path: Path) -> None:
    tests = folder(tmp_path, "    command: [python, misbehaving.py, pid.txt, exit]")
    done = agent_run("test", tests)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{tests}:4: service 'api' exited with code 3 before it was ready" in done.stdout
    assert "fatal: no database configured" in done.stdout
    assert "nothing was run" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert "PASS" not in done.stdout


def test_a_service_that_never_listens_times_out_bounded_and_is_stopped(tmp_path: Path) -> None:
    tests = folder(tmp_path, "    command: [python, misbehaving.py, pid.txt, hang]\n"
                             "    startup_timeout_s: 1.5")
    started = time.monotonic()
    done = agent_run("test", tests)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{tests}:4: service 'api' did not accept TCP connections on 127.0.0.1:" in done.stdout
    assert "within 1.5 s (startup_timeout_s)" in done.stdout
    assert "    fatal: no database configured" in done.stdout  # the end of its output
    assert "Traceback" not in done.stdout + done.stderr
    assert elapsed < 20  # the timeout, plus starting Python twice and stopping it
    assert gone(tmp_path / "pid.txt")


def test_a_command_that_does_not_exist(tmp_path: Path) -> None:
    tests = folder(tmp_path, "    command: [no-such-program-here, '{port}']")
    done = agent_run("test", tests)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{tests}:4: service 'api' cannot start 'no-such-program-here': No such file or directory" \
        in done.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_the_services(tmp_path: Path, signum: signal.Signals) -> None:
    tests = folder(tmp_path, SERVE)
    # A case that waits long for an answer that never comes: Ctrl-C arrives while it runs.
    tests.write_text(tests.read_text().replace("      - user: How much is item 7?",
                                               "      - wait_ms: 60000\n        user: How much is item 7?"))
    pid_file = tmp_path / "pid.txt"
    process = subprocess.Popen([sys.executable, "-m", "runner", "test", str(tests)], cwd=REPO, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_file.exists(), "the service never started"
        time.sleep(1.0)  # the case is running now
        process.send_signal(signum)
        interrupted = time.monotonic()
        process.communicate(timeout=10)
        # Within the stop bound (SIGTERM answered at once by a Python server), with margin.
        assert time.monotonic() - interrupted < 6
        assert process.returncode == 128 + signum, process.returncode
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert gone(pid_file)


@pytest.mark.parametrize(("service", "vars_value", "message"), [
    (SERVE, "{services.apj.url}", "7:8: error: vars.api: no service 'apj' (it has: api)"),
    ("    ready: tcp", "{services.api.url}", "4:3: error: missing required key 'command' in services.api"),
    ("    command: [python]\n    ready: udp", "x",
     "6:5: error: services.api.ready: 'udp' is not one of: tcp, http"),
])
def test_mistakes_are_errors_at_their_line(tmp_path: Path, service: str, vars_value: str,
                                           message: str) -> None:
    tests = folder(tmp_path, service)
    tests.write_text(tests.read_text().replace("{services.api.url}", vars_value))
    loaded, problems = check_tests(tests)
    assert loaded is None
    errors = [p.format() for p in problems if p.is_error]
    assert any(message in e and e.startswith(f"{tests}:") for e in errors), errors


def test_check_sees_the_services_and_a_stand_in_port(tmp_path: Path) -> None:
    tests = folder(tmp_path, SERVE)
    loaded, problems = check_tests(tests)
    assert loaded is not None, [p.format() for p in problems]
    (service,) = loaded.tests.services
    assert (service.name, service.command, service.ready, service.folder) == \
        ("api", ("python", "server.py", "{port}", "pid.txt"), "http", tmp_path)
    assert loaded.tests.vars == {"api": "{services.api.url}"}


def test_pytest_reports_a_service_that_exits_without_a_traceback(tmp_path: Path) -> None:
    tests = folder(tmp_path, "    command: [python, misbehaving.py, pid.txt, exit]")
    done = agent_run(tests, "-p", "runner.testing.plugin", "-p", "no:cacheprovider", "-q", module="pytest")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 error" in done.stdout
    assert f"{tests}:4: service 'api' exited with code 3 before it was ready" in done.stdout
    assert "fatal: no database configured" in done.stdout
    assert "Traceback" not in done.stdout and "services.py" not in done.stdout
