"""`agent-run serve` end to end: a real server process, real WebSocket callers, the emulator.

Every test bounds its waits; a server that hangs fails the test instead of the run.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.e2e_helpers import base_env
from tests.serve.serve_helpers import (
    AGENT,
    QUESTION_WAV,
    REPO,
    CallLog,
    ServeProcess,
    open_ws,
    read_pcm,
    receive_until,
    stream_pcm,
    transcript_entries,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve")) as proc:
        proc.wait_ready()
        yield proc


def _answered(log: CallLog) -> bool:
    return any("delivered" in text for text in log.said("assistant")) and log.audio_bytes > 0


async def _spoken_call(url: str, busy_probe: ServeProcess | None = None) -> tuple[CallLog, str | None]:
    log = CallLog()
    busy: str | None = None
    async with open_ws(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        log.messages.append(first)
        sender = asyncio.create_task(stream_pcm(ws, read_pcm(QUESTION_WAV), first["input_rate"],
                                                then_silence_s=15))
        if busy_probe is not None:
            busy = (await asyncio.to_thread(busy_probe.get_json, "/ping"))[1]["status"]
        await receive_until(ws, log, _answered, timeout_s=30)
        sender.cancel()
    return log, busy


def test_a_spoken_question_gets_the_tool_call_the_transcript_and_audio(server: ServeProcess) -> None:
    before = {name: server.metric(name) for name in
              ("agent_run_conversations_total", "agent_run_tool_calls_total", "agent_run_turns_total",
               "agent_run_response_latency_seconds_count")}
    status, ping = server.get_json("/ping")
    assert status == 200 and ping["status"] == "Healthy"

    log, busy = asyncio.run(_spoken_call(server.ws_url, busy_probe=server))

    assert busy == "HealthyBusy"
    ready = log.messages[0]
    assert ready == {"type": "ready", "input_rate": 16000, "output_rate": 24000, "agent": "orders",
                     "text": True}
    assert log.of("tool_call") == [{"type": "tool_call", "name": "trackOrderTool",
                                    "input": {"orderId": "12345"}}]
    assert log.of("tool_result") == [{"type": "tool_result", "name": "trackOrderTool", "ok": True}]
    assert log.said("user"), log.messages
    assert "Your order 12345 is delivered." in log.said("assistant")
    assert log.audio_bytes > 24000 * 2  # more than a second of assistant speech at 24 kHz
    assert {"listening", "speaking"} <= {m["state"] for m in log.of("state")}

    # The conversation ends once the caller hangs up: its transcript closes, the server is idle.
    assert server.wait_idle() < 3.0
    [path] = [p for p in server.transcript_files() if "trackOrderTool" in p.read_text()]
    entries = transcript_entries(path)
    assert entries[0]["type"] == "session" and entries[0]["event"] == "start"
    assert entries[-1] == {**entries[-1], "type": "session", "event": "end", "reason": "caller hung up"}
    assert [e["name"] for e in entries if e["type"] == "tool_call"] == ["trackOrderTool"]

    after = {name: server.metric(name) for name in before}
    assert after["agent_run_conversations_total"] == before["agent_run_conversations_total"] + 1
    assert after["agent_run_tool_calls_total"] == before["agent_run_tool_calls_total"] + 1
    assert after["agent_run_turns_total"] >= before["agent_run_turns_total"] + 2
    latency = "agent_run_response_latency_seconds_count"
    assert after[latency] > before[latency]
    assert server.metric("agent_run_stream_setup_seconds_count") >= 1
    assert server.metric("agent_run_live_conversations") == 0


def test_a_typed_line_gets_an_answer(server: ServeProcess) -> None:
    async def call() -> CallLog:
        log = CallLog()
        async with open_ws(server.ws_url) as ws:
            log.messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await ws.send(json.dumps({"type": "hello"}))
            await ws.send(json.dumps({"type": "text", "text": "Where is my order 12345?"}))
            await receive_until(ws, log, _answered, timeout_s=30)
        return log

    log = asyncio.run(call())
    assert log.said("user") == ["Where is my order 12345?"]
    assert "Your order 12345 is delivered." in log.said("assistant")
    assert log.of("tool_call")[0]["name"] == "trackOrderTool"


def test_a_bad_message_gets_an_error_not_a_hangup(server: ServeProcess) -> None:
    async def call() -> CallLog:
        log = CallLog()
        async with open_ws(server.ws_url) as ws:
            await ws.recv()
            await ws.send("not json")
            await ws.send(json.dumps({"type": "dance"}))
            await receive_until(ws, log, lambda lg: len(lg.of("error")) >= 2, timeout_s=10)
        return log

    errors = [m["message"] for m in asyncio.run(call()).of("error")]
    assert errors == ["text frames must be JSON", "unknown message type 'dance'"]


def test_health_endpoints(server: ServeProcess) -> None:
    server.wait_idle()
    assert server.get_json("/readyz") == (200, {"ready": True, "live_conversations": 0})
    status, body = server.get("/metrics")
    assert status == 200 and "# TYPE agent_run_live_conversations gauge" in body
    assert "agent_run_stream_rotations_total" in body and "agent_run_tool_duration_seconds" in body


def test_a_token_is_required_when_given(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--token", "s3cret-token") as server:
        server.wait_ready()

        async def calls() -> list[object]:
            outcomes: list[object] = []
            for url, headers in ((server.ws_url, ()), (server.ws_url + "?token=wrong", ()),
                                 (server.ws_url + "?token=s3cret-token", ()),
                                 (server.ws_url, (("Authorization", "Bearer s3cret-token"),))):
                try:
                    async with open_ws(url, headers=headers) as ws:
                        outcomes.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
                except InvalidStatus as exc:
                    outcomes.append(exc.response.status_code)
            return outcomes

        assert asyncio.run(calls()) == [403, 403, "ready", "ready"]
        assert server.get_json("/ping")[0] == 200  # health is not a caller endpoint
    assert "s3cret-token" not in server.stderr() + server.stdout_path.read_text()


def test_a_public_address_without_a_token_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "serve", str(AGENT), "--host", "0.0.0.0"],
                          cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "--host 0.0.0.0 accepts callers from other machines" in done.stderr
    assert "--no-auth" in done.stderr and "Traceback" not in done.stderr


def test_past_capacity_a_caller_is_closed_with_1013(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--max-conversations", "1") as server:
        server.wait_ready()

        async def calls() -> tuple[CallLog, tuple[int, object]]:
            async with open_ws(server.ws_url) as first:
                assert json.loads(await asyncio.wait_for(first.recv(), 10))["type"] == "ready"
                await asyncio.sleep(0.3)
                readyz = await asyncio.to_thread(server.get_json, "/readyz")
                second_log = CallLog()
                async with open_ws(server.ws_url) as second:
                    await receive_until(second, second_log, lambda lg: False, timeout_s=10)
            return second_log, readyz

        second, (status, body) = asyncio.run(calls())
        assert second.close_code == 1013
        assert "full" in second.close_reason
        assert second.messages == []  # refused before any greeting
        assert status == 503 and body["ready"] is False
        assert server.metric("agent_run_refused_callers_total") == 1


def test_sigterm_drains_a_live_call_then_exits(tmp_path: Path) -> None:
    drain_s = 2.0
    with ServeProcess(tmp_path, "--drain-timeout", str(drain_s)) as server:
        server.wait_ready()

        async def call() -> tuple[CallLog, CallLog, float]:
            log, refused = CallLog(), CallLog()
            async with open_ws(server.ws_url) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 10))
                sender = asyncio.create_task(stream_pcm(ws, bytes(32000), first["input_rate"],
                                                        then_silence_s=20))
                await asyncio.sleep(1.0)
                server.terminate()
                sent_at = time.monotonic()
                await asyncio.sleep(0.3)
                async with open_ws(server.ws_url) as late:  # draining: refused
                    await receive_until(late, refused, lambda lg: False, timeout_s=5)
                await receive_until(ws, log, lambda lg: False, timeout_s=drain_s + 8)
                sender.cancel()
            return log, refused, sent_at

        log, refused, sent_at = asyncio.run(call())
        server.proc.wait(timeout=drain_s + 6)
        elapsed = time.monotonic() - sent_at
        why = f"after {elapsed:.2f} s; refused {refused}; call {log.close_code}; stderr:\n{server.stderr()}"
        assert refused.close_code == 1013 and "shutting down" in refused.close_reason, why
        assert log.close_code == 1001, why
        assert server.proc.returncode == 143, why  # 128 + SIGTERM, like every agent-run command
        assert elapsed <= drain_s + 2.5, why
        [path] = server.transcript_files()
        last = transcript_entries(path)[-1]
        assert (last["type"], last["event"], last["reason"]) == ("session", "end", "server shutting down")
        assert "draining: 1 live conversation(s)" in server.stderr()


def test_transcripts_to_stdout_are_json_lines_with_a_conversation_id(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--transcripts", "-") as server:  # the later option wins
        server.wait_ready()

        async def call() -> None:
            async with open_ws(server.ws_url) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "text", "text": "Where is my order 12345?"}))
                await receive_until(ws, CallLog(), _answered, timeout_s=30)

        asyncio.run(call())
        server.wait_idle()
    lines = [json.loads(line) for line in server.stdout_path.read_text().splitlines()]
    assert lines and len({line["conversation"] for line in lines}) == 1
    assert lines[0]["type"] == "session"
    assert (lines[-1]["type"], lines[-1]["event"]) == ("session", "end")
    assert any(line["type"] == "tool_call" for line in lines)
    assert server.transcript_files() == []


def test_a_line_typed_over_the_assistant_interrupts_its_playback(server: ServeProcess) -> None:
    async def call() -> CallLog:
        log = CallLog()
        async with open_ws(server.ws_url) as ws:
            log.messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await ws.send(json.dumps({"type": "text", "text": "Where is my order 12345?"}))
            await receive_until(ws, log, lambda lg: lg.audio_bytes > 0, timeout_s=20)
            await ws.send(json.dumps({"type": "text", "text": "What time is it?"}))
            await receive_until(ws, log, lambda lg: bool(lg.of("interrupted")) and len(lg.said("user")) == 2,
                                timeout_s=10)
        return log

    log = asyncio.run(call())
    assert log.of("interrupted") == [{"type": "interrupted"}]
    assert log.said("user") == ["Where is my order 12345?", "What time is it?"]
    # The page drops what it buffered on `interrupted`: it comes before the new line's transcript.
    kinds = [m["type"] for m in log.messages]
    assert kinds.index("interrupted") < len(kinds) - 1 - kinds[::-1].index("transcript")


def test_a_taken_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "runner", "serve", str(AGENT), "--port", str(port)],
                              cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=30,
                              check=False)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
