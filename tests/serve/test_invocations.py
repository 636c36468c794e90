"""`POST /invocations` (AgentCore Runtime) and `/ping`'s `time_of_last_update`, end to end.

A real `agent-run serve` process with the emulator serves three agents: orders (Nova 2), legacy
(Nova Sonic v1: speech only) and slow (Nova 2, whose order tool takes 30 s: the invocation times
out). Requests are real HTTP from urllib.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.serve.serve_helpers import REPO, ServeProcess, open_ws, transcript_entries

pytestmark = pytest.mark.timeout(90)

TIMEOUT_S = 3

SLOW_AGENT = """\
version: 1
name: slow
description: Its order tool takes 30 s.
model:
  id: amazon.nova-2-sonic-v1:0
  region: us-east-1
voice: matthew
system_prompt: You track orders.
tools:
  - name: trackOrderTool
    description: Tracks an order, slowly.
    input_schema: {type: object, properties: {orderId: {type: string}}, required: [orderId]}
    handler: slow_tools:track
    timeout_s: 30
"""

SLOW_TOOLS = """\
import asyncio


async def track(orderId: str) -> dict:
    await asyncio.sleep(30)
    return {"orderNumber": orderId, "orderStatus": "late"}
"""


def _agents(folder: Path) -> tuple[Path, Path]:
    legacy = folder / "legacy.yaml"
    legacy.write_text((REPO / "agents" / "simple.yaml").read_text().replace("name: simple", "name: legacy")
                      .replace("amazon.nova-2-sonic-v1:0", "amazon.nova-sonic-v1:0"))
    slow = folder / "slow.yaml"
    slow.write_text(SLOW_AGENT)
    (folder / "slow_tools.py").write_text(SLOW_TOOLS)
    return legacy, slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("invocations")
    with ServeProcess(tmp, "--invocation-timeout", str(TIMEOUT_S), "--max-conversations", "2",
                      more_agents=_agents(tmp)) as proc:
        proc.wait_ready()
        yield proc


def post(server: ServeProcess, body: bytes | Mapping[str, Any], headers: Mapping[str, str] | None = None,
         path: str = "/invocations") -> tuple[int, str, str]:
    """(status, content type, body) of a POST."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.base + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("content-type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode()


def _transcript(server: ServeProcess, conversation: str) -> list[dict[str, Any]]:
    [path] = [p for p in server.transcript_files() if conversation in p.name]
    return transcript_entries(path)


def test_a_prompt_gets_the_reply_and_tool_calls_as_json(server: ServeProcess) -> None:
    status, kind, body = post(server, {"prompt": "Where is my order 12345?"})
    assert status == 200, body
    assert kind == "application/json"
    result = json.loads(body)
    assert "Your order 12345 is delivered." in result["reply"]
    assert result["tool_calls"] == [{"name": "trackOrderTool", "input": {"orderId": "12345"}, "ok": True}]
    entries = _transcript(server, result["conversation"])
    assert [e["text"] for e in entries if e["type"] == "user"] == ["Where is my order 12345?"]
    assert entries[-1]["type"] == "session" and entries[-1]["event"] == "end"
    assert entries[0]["agent"] == "orders"
    server.wait_idle()


def test_sse_streams_the_transcript_entries_then_the_result(server: ServeProcess) -> None:
    status, kind, body = post(server, {"text": "Where is my order 12345?", "agent": "orders"},
                              {"Accept": "text/event-stream"})
    assert status == 200 and kind.startswith("text/event-stream"), body
    events = []
    for block in body.strip().split("\n\n"):
        name, data = block.split("\n", 1)
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    kinds = [data["type"] for name, data in events if name == "entry"]
    assert kinds[0] == "session" and "user" in kinds and "tool_call" in kinds and "assistant" in kinds
    assert kinds[-1] == "session"  # the end record, before the result
    name, result = events[-1]
    assert name == "result" and result["status"] == 200
    assert "Your order 12345 is delivered." in result["reply"]
    server.wait_idle()


def test_bad_requests_get_clear_errors(server: ServeProcess) -> None:
    cases: list[tuple[bytes | dict[str, Any], int, str]] = [
        (b"not json", 400, "the body must be JSON"),
        ([1, 2], 400, "must be a JSON object"),  # type: ignore[list-item]
        ({"prompt": ""}, 400, '"prompt" (or "text") must be a non-empty string'),
        ({"prompt": "Hi", "agent": "nobody"}, 404,
         "unknown agent 'nobody': this server serves orders, legacy, slow"),
        ({"prompt": "Hi", "agent": "legacy"}, 400, "answers speech only: /invocations sends typed text"),
    ]
    for body, status, message in cases:
        got, _, text = post(server, body if isinstance(body, bytes) else json.dumps(body).encode())
        assert got == status, text
        assert message in json.loads(text)["error"]
    assert post(server, b"x" * (65 * 1024))[0] == 413


async def _hold_two_slots(server: ServeProcess) -> int:
    async with open_ws(server.ws_url) as one, open_ws(server.ws_url) as two:
        await asyncio.wait_for(one.recv(), 10)
        await asyncio.wait_for(two.recv(), 10)
        await asyncio.sleep(0.3)
        status, _, body = await asyncio.to_thread(post, server, {"prompt": "Where is my order 12345?"})
        assert "full" in json.loads(body)["error"]
        return status


def test_a_full_server_answers_503(server: ServeProcess) -> None:
    assert asyncio.run(_hold_two_slots(server)) == 503
    server.wait_idle()


def test_no_answer_in_time_is_a_504_not_a_hang(server: ServeProcess) -> None:
    started = time.monotonic()
    status, _, body = post(server, {"prompt": "Where is my order 12345?", "agent": "slow"})
    elapsed = time.monotonic() - started
    assert status == 504, body
    result = json.loads(body)
    assert result["error"] == f"no answer within {TIMEOUT_S} s"
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 6  # the conversation ends in order, promptly
    entries = _transcript(server, result["conversation"])
    assert entries[-1]["type"] == "session" and entries[-1]["event"] == "end"
    assert "--invocation-timeout" in entries[-1]["reason"]
    assert server.wait_idle() < 3


def test_ping_reports_when_its_status_last_changed(server: ServeProcess) -> None:
    server.wait_idle()
    _, idle = server.get_json("/ping")
    assert idle["status"] == "Healthy" and isinstance(idle["time_of_last_update"], int)
    time.sleep(1.1)

    async def busy() -> dict[str, Any]:
        async with open_ws(server.ws_url) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            return (await asyncio.to_thread(server.get_json, "/ping"))[1]

    during = asyncio.run(busy())
    assert during["status"] == "HealthyBusy"
    assert during["time_of_last_update"] > idle["time_of_last_update"]
    assert abs(during["time_of_last_update"] - time.time()) < 5
    server.wait_idle()
    _, after = server.get_json("/ping")
    assert after["time_of_last_update"] >= during["time_of_last_update"]


def test_a_stream_reader_going_away_ends_the_conversation(server: ServeProcess) -> None:
    import http.client

    server.wait_idle()
    before = set(server.transcript_files())
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = json.dumps({"prompt": "Where is my order 12345?", "agent": "slow"})
    connection.request("POST", "/invocations", body=body, headers={"Accept": "text/event-stream"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"event: entry")  # the session started: the tool now hangs
    connection.close()
    assert server.wait_idle(timeout_s=8) < 8
    [path] = set(server.transcript_files()) - before
    last = transcript_entries(path)[-1]
    assert (last["event"], last["reason"]) == ("end", "caller gone")  # not the invocation timeout
