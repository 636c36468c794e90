"""HTTP tools through the real CLI: a conversation against the emulator whose model calls an HTTP
tool served over TLS by a local server (the result in the transcript, a failing call an error
result the conversation survives), `check` warnings for unset variables, the refusal to run without
them, and the secret's value absent from every transcript, console line, log and `render` output."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.e2e_helpers import REPO, Finished, Run, base_env
from tests.tools.http.http_servers import LocalHttpServer

SECRET = "sk-live-7Hq2Zp9Xw4Lm"
SCENARIO = """\
description: the model looks an order up over HTTP, then calls an endpoint that fails
turns:
  - user: "Where is my order 12345?"
    assistant:
      - tool: lookup_order
        input: {order_id: "12345"}
      - say: "Order {{ tool_result.order.id }} is {{ tool_result.order.status }}."
  - user: "Cancel it."
    assistant:
      - tool: cancel_order
        input: {order_id: "12345"}
      - say: "{% if tool_result.error is defined %}That failed.{% else %}Cancelled.{% endif %}"
  - user: "Thanks."
    assistant:
      - say: "You're welcome."
settings:
  speech_end_ms: 300
  speed: 8
"""


def agent_text(base_url: str) -> str:
    return f"""\
version: 1
name: http orders
model: {{id: amazon.nova-2-sonic-v1:0, region: us-east-1}}
voice: matthew
vars: {{shop: demo}}
system_prompt: You look orders up.
tools:
  - name: lookup_order
    description: Look an order up by its number.
    input_schema:
      type: object
      properties: {{order_id: {{type: string}}}}
      required: [order_id]
    http:
      url: "{base_url}/order/{{order_id}}?shop={{vars.shop}}"
      headers:
        Authorization: "Bearer ${{env:ORDERS_TOKEN}}"
      ca_file: ca.pem
  - name: cancel_order
    description: Cancel an order.
    input_schema:
      type: object
      properties: {{order_id: {{type: string}}}}
    timeout_s: 5
    http:
      method: DELETE
      url: "{base_url}/status/503?order={{order_id}}&key=${{env:ORDERS_TOKEN}}"
      ca_file: ca.pem
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalHttpServer, Path, Path]]:
    tmp = tmp_path_factory.mktemp("httpcli")
    with LocalHttpServer(tls_dir=tmp / "ca") as server:
        assert server.ca_file is not None
        folder = tmp / "agent"
        folder.mkdir()
        shutil.copy(server.ca_file, folder / "ca.pem")
        agent = folder / "http_orders.yaml"
        agent.write_text(agent_text(server.url), encoding="utf-8")
        scenario = folder / "http_orders.scenario.yaml"
        scenario.write_text(SCENARIO, encoding="utf-8")
        yield server, agent, scenario


def cli(*args: str | Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def conversation(setup: tuple[LocalHttpServer, Path, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Finished]:
    _, agent, scenario = setup
    transcript = tmp_path_factory.mktemp("conv") / "t.jsonl"
    run = Run([agent, "--text", "--mute", "--emulate", scenario, "--transcript", transcript, "-v",
               "--idle-exit", "1"], transcript=transcript, env=base_env(ORDERS_TOKEN=SECRET),
              stdin=subprocess.PIPE)
    assert run.proc.stdin is not None
    run.proc.stdin.write("Where is my order 12345?\nCancel it.\nThanks.\n")
    run.proc.stdin.close()
    run.proc.stdin = None
    try:
        yield run.finish(timeout_s=90)
    finally:
        run.kill()


def test_the_model_gets_the_http_result(conversation: Finished, setup: tuple[LocalHttpServer, Path, Path]
                                        ) -> None:
    done = conversation
    assert done.returncode == 0, done.describe()
    calls = [(e["name"], e["input"]) for e in done.entries("tool_call")]
    assert calls == [("lookup_order", {"order_id": "12345"}), ("cancel_order", {"order_id": "12345"})]
    first = done.entries("tool_result")[0]
    assert first["result"]["order"] == {"id": "12345", "status": "shipped", "eta": "Friday"}, first
    # The server echoed the Authorization header: the model and the transcript see the reference.
    assert first["result"]["auth"] == "Bearer ${env:ORDERS_TOKEN}"
    answers = [e["text"] for e in done.entries("assistant")]
    assert answers[:1] == ["Order 12345 is shipped."], done.describe()
    server = setup[0]
    lookups = [s for s in server.seen if s.path.startswith("/order/")]
    assert lookups and lookups[-1].path == "/order/12345?shop=demo"
    assert lookups[-1].headers["authorization"] == f"Bearer {SECRET}"


def test_a_failing_endpoint_is_an_error_result_and_the_conversation_goes_on(conversation: Finished) -> None:
    done = conversation
    second = done.entries("tool_result")[1]
    assert "result" not in second
    assert second["error"].startswith("HTTP 503 Service Unavailable from DELETE https://127.0.0.1:"), second
    answers = [e["text"] for e in done.entries("assistant")]
    assert answers == ["Order 12345 is shipped.", "That failed.", "You're welcome."], done.describe()


def test_the_secret_is_nowhere_in_the_run_output(conversation: Finished) -> None:
    done = conversation
    assert done.transcript, done.describe()
    assert SECRET not in done.describe()  # transcript, stdout and stderr (-v: every event and the log)
    assert "${env:ORDERS_TOKEN}" in done.describe()  # the reference stands in for it


def test_check_warns_about_an_unset_variable(setup: tuple[LocalHttpServer, Path, Path]) -> None:
    agent = setup[1]
    done = cli("check", agent, env=base_env())
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if ": warning: " in line]
    assert len(warnings) == 2, done.stdout
    assert warnings[0].startswith(f"{agent}:17:9: warning: tools[0].http.headers.Authorization: "
                                  f"environment variable ORDERS_TOKEN is not set"), warnings
    assert "tools[1].http.url" in warnings[1] and "ORDERS_TOKEN" in warnings[1]
    quiet = cli("check", agent, env=base_env(ORDERS_TOKEN=SECRET))
    assert quiet.returncode == 0 and ": warning: " not in quiet.stdout, quiet.stdout
    assert SECRET not in quiet.stdout + quiet.stderr


def test_a_run_refuses_to_start_without_the_variable(setup: tuple[LocalHttpServer, Path, Path]) -> None:
    _, agent, scenario = setup
    started = time.monotonic()
    done = cli(agent, "--text", "--mute", "--emulate", scenario, env=base_env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "agent-run: error: environment variable(s) not set: ORDERS_TOKEN; nothing was started\n" \
        f"  {agent}:17:9: ORDERS_TOKEN, used by tool lookup_order\n" \
        f"  {agent}:27:7: ORDERS_TOKEN, used by tool cancel_order\n" in done.stderr
    assert time.monotonic() - started < 30


def test_serve_refuses_to_start_without_the_variable(setup: tuple[LocalHttpServer, Path, Path]) -> None:
    _, agent, scenario = setup
    done = cli("serve", agent, "--emulate", scenario, "--port", "0", env=base_env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "environment variable(s) not set: ORDERS_TOKEN; nothing was started" in done.stderr
    assert f"  {agent}:17:9: ORDERS_TOKEN, used by tool lookup_order\n" in done.stderr


def test_render_never_shows_the_secret(setup: tuple[LocalHttpServer, Path, Path]) -> None:
    agent = setup[1]
    done = cli("render", agent, env=base_env(ORDERS_TOKEN=SECRET))
    assert done.returncode == 0, done.stderr
    assert '"lookup_order"' in done.stdout
    assert SECRET not in done.stdout + done.stderr
