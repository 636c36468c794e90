"""Several agents on one server: `agent-run serve orders.yaml concierge.yaml legacy.yaml`.

A real server process with the emulator; callers pick an agent by name on `/ws`, on Twilio's
webhook and stream, and `/agents` lists them. Name clashes and stray `--var`s are refused at start.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_helpers import base_env
from tests.serve.serve_helpers import (
    AGENT,
    REPO,
    CallLog,
    ServeProcess,
    open_ws,
    receive_until,
    transcript_entries,
)
from tests.twilio.twilio_caller import TwilioCaller

pytestmark = pytest.mark.timeout(90)

CONCIERGE = REPO / "agents" / "concierge.yaml"


def legacy_agent(folder: Path) -> Path:
    """A Nova Sonic v1 agent (speech only), named `legacy`."""
    text = (REPO / "agents" / "simple.yaml").read_text()
    path = folder / "legacy.yaml"
    path.write_text(text.replace("name: simple", "name: legacy").replace("amazon.nova-2-sonic-v1:0",
                                                                          "amazon.nova-sonic-v1:0"))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("multi")
    with ServeProcess(tmp, "-v", more_agents=(CONCIERGE, legacy_agent(tmp))) as proc:
        proc.wait_ready()
        yield proc


def test_agents_lists_every_agent_served_first_is_default(server: ServeProcess) -> None:
    status, agents = server.get_json("/agents")
    assert status == 200
    assert [a["name"] for a in agents] == ["orders", "concierge", "legacy"]
    orders, concierge, legacy = agents
    assert orders == {"name": "orders", "description": orders["description"],
                      "model": "amazon.nova-2-sonic-v1:0", "input_rate": 16000, "output_rate": 24000,
                      "text": True, "default": True}
    assert "tracks orders" in orders["description"]
    assert concierge["default"] is False and concierge["text"] is True
    assert legacy["model"] == "amazon.nova-sonic-v1:0" and legacy["text"] is False
    assert "serving orders, concierge, legacy on" in server.stderr()


async def _ready(url: str) -> tuple[dict[str, Any] | None, CallLog]:
    log = CallLog()
    async with open_ws(url) as ws:
        await receive_until(ws, log, lambda lg: bool(lg.messages), timeout_s=10)
        if log.messages:
            await ws.send(json.dumps({"type": "text", "text": "Where is my order 12345?"}))
            await receive_until(ws, log, lambda lg: bool(lg.said("assistant")), timeout_s=20)
    return (log.messages[0] if log.messages else None), log


def test_ws_picks_the_agent_by_name(server: ServeProcess) -> None:
    before = set(server.transcript_files())
    ready, log = asyncio.run(_ready(server.ws_url + "?agent=concierge"))
    assert ready is not None and ready["agent"] == "concierge", log
    assert log.said("assistant")
    server.wait_idle()
    [path] = set(server.transcript_files()) - before
    start = transcript_entries(path)[0]
    assert (start["type"], start["agent"]) == ("session", "concierge")

    default, _ = asyncio.run(_ready(server.ws_url))
    assert default is not None and default["agent"] == "orders"
    legacy, _ = asyncio.run(_ready(server.ws_url + "?agent=legacy"))
    assert legacy is not None and legacy["agent"] == "legacy" and legacy["text"] is False
    server.wait_idle()
    # Per-agent figures in /metrics (the unlabelled total stays for autoscalers).
    metrics = server.get("/metrics")[1]
    assert 'agent_run_agent_live_conversations{agent="concierge"} 0.0' in metrics
    assert server.metric('agent_run_turns_total{agent="concierge"}') >= 1
    assert "agent_run_live_conversations 0.0" in metrics


def test_an_unknown_agent_is_refused_with_4404(server: ServeProcess) -> None:
    ready, log = asyncio.run(_ready(server.ws_url + "?agent=nobody"))
    assert ready is None
    assert log.close_code == 4404
    assert log.close_reason == "unknown agent 'nobody': this server serves orders, concierge, legacy"


async def _twilio_call(server: ServeProcess, parameters: dict[str, str]) -> int | None:
    async with TwilioCaller(f"ws://127.0.0.1:{server.port}/twilio/stream", parameters=parameters) as call:
        await call.speak(b"\xff" * 8000)  # a second of line silence: the conversation is running
        await call.hang_up()
        await call.wait_for(lambda h: h.close_code is not None, 10)
        return call.heard.close_code


def _post(server: ServeProcess, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(server.base + path, data=b"CallSid=CA1", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_twilio_carries_the_agent_from_webhook_to_stream(server: ServeProcess) -> None:
    status, body = _post(server, "/twilio/voice?agent=concierge")
    assert status == 200
    stream = ET.fromstring(body.split("?>", 1)[1]).find("Connect/Stream")
    assert stream is not None
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters["agent"] == "concierge"
    assert _post(server, "/twilio/voice?agent=nobody")[0] == 404

    before = set(server.transcript_files())
    assert asyncio.run(_twilio_call(server, {"agent": "concierge"})) == 1000
    server.wait_idle()
    [path] = set(server.transcript_files()) - before
    assert transcript_entries(path)[0]["agent"] == "concierge"
    assert asyncio.run(_twilio_call(server, {"agent": "nobody"})) == 4404


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "serve", *args], cwd=REPO, env=base_env(),
                          capture_output=True, text=True, timeout=30, check=False)


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    twin = tmp_path / "twin.yaml"
    twin.write_text(AGENT.read_text())
    (tmp_path / "orders_tools.py").write_text((REPO / "agents" / "orders_tools.py").read_text())
    done = _serve(str(AGENT), str(twin))
    assert done.returncode == 2, done.stderr
    assert f"{AGENT} and {twin} are both named 'orders'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_var_no_agent_declares_is_an_error() -> None:
    done = _serve(str(AGENT), str(CONCIERGE), "--var", "nosuch=1")
    assert done.returncode == 1, done.stderr
    assert "--var nosuch: no such variable" in done.stderr and "Traceback" not in done.stderr


def test_a_var_applies_to_every_agent_that_declares_it() -> None:
    from runner.commands.serve import _load_agents

    orders, concierge = _load_agents([AGENT, CONCIERGE], {"city": "Lyon"})
    assert concierge.vars["city"] == "Lyon" and "Lyon" in concierge.system_prompt
    assert "city" not in orders.vars
