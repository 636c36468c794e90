"""OpenTelemetry under `agent-run serve`: a real server (uvicorn, the emulator, the real SDK over TLS)
whose OTEL_* variables point at a local OTLP/HTTP receiver (otlp_receiver.py). Each conversation is
its own trace: a typed `POST /invocations` turn, and a phone call through the simulated Twilio of
tests/twilio (a spoken question, the tool call, the answer heard), with the spans a CLI run has.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto", reason="the `otel` extra (opentelemetry-proto) is not installed")

from otlp_receiver import OtlpReceiver, ReceivedSpan

from tests.twilio.twilio_caller import SAMPLES, ServeProcess, TwilioCaller, wav_as_ulaw

pytestmark = pytest.mark.timeout(150)

NOVA2 = "amazon.nova-2-sonic-v1:0"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The spans (by trace) and transcripts of an invocation and a phone call, once the server has
    exited (SIGTERM: it flushes what is left of the export)."""
    with OtlpReceiver() as receiver:
        tmp = tmp_path_factory.mktemp("serve_otel")
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "600000",
               "OTEL_SERVICE_NAME": "orders-desk"}
        with ServeProcess(tmp, SAMPLES / "orders.scenario.yaml", env=env) as server:
            server.wait_ready()
            reply = _invoke(server, "Where is my order 12345?")
            asyncio.run(_call(server))
            server.wait_idle(15)
            server.terminate()
            assert server.proc.wait(timeout=20) == 143, server.stderr()
            entries = server.transcripts_done(2)
            log = server.stderr()
        with receiver.received.lock:
            spans = list(receiver.received.spans)
            metric_exports = list(receiver.received.metric_exports)
    traces: dict[bytes, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    yield {"reply": reply, "traces": list(traces.values()), "entries": entries, "log": log,
           "metrics": metric_exports}


def _invoke(server: ServeProcess, prompt: str) -> dict[str, Any]:
    body = json.dumps({"prompt": prompt}).encode()
    request = urllib.request.Request(server.base + "/invocations", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def _call(server: ServeProcess) -> None:
    question = wav_as_ulaw(SAMPLES / "where_is_my_order.wav")
    async with TwilioCaller(f"ws://127.0.0.1:{server.port}/twilio/stream") as caller:
        speaking = asyncio.create_task(caller.speak(question, then_silence_s=30))
        await caller.wait_answer_arrived(30, played=True)
        await asyncio.sleep(1.5)  # the turn closes once its answer has played (and 1 s after END_TURN)
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        speaking.cancel()


def _named(trace: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in trace}


def _trace_of(served: dict[str, Any], trigger: str) -> dict[str, ReceivedSpan]:
    found = [_named(t) for t in served["traces"]
             if any(s.attributes.get("agent_run.trigger") == trigger for s in t)]
    assert len(found) == 1, [sorted(_named(t)) for t in served["traces"]]
    return found[0]


def _check_conversation(spans: dict[str, ReceivedSpan], turn: dict[str, Any]) -> None:
    assert {"conversation", "stream 1", "turn 1", "tool trackOrderTool"} <= set(spans), sorted(spans)
    root = spans["conversation"]
    assert root.parent_span_id == b"" and root.service == "orders-desk"
    assert root.attributes["agent_run.model"] == NOVA2 and root.attributes["agent_run.agent"] == "orders"
    assert root.attributes["agent_run.voice"]
    assert root.attributes["agent_run.turns"] >= 1
    assert root.status_code != 2  # not an error
    assert spans["stream 1"].parent_span_id == root.span_id
    assert spans["stream 1"].attributes["agent_run.stream.setup_ms"] > 0
    turn_span = spans["turn 1"]
    assert turn_span.parent_span_id == root.span_id
    figure = turn["speech_end_to_first_audio_ms"]
    assert turn_span.attributes["agent_run.speech_end_to_first_audio_ms"] == figure
    assert turn_span.attributes["gen_ai.usage.output_tokens"] == (
        turn["tokens"]["output_speech"] + turn["tokens"]["output_text"])
    tool = spans["tool trackOrderTool"]
    assert tool.parent_span_id == turn_span.span_id
    assert tool.attributes["gen_ai.tool.name"] == "trackOrderTool" and tool.attributes["agent_run.tool.ok"]
    assert root.start_ns <= turn_span.start_ns <= tool.start_ns <= tool.end_ns <= turn_span.end_ns
    assert turn_span.end_ns <= root.end_ns


def _turns(entries: list[dict[str, Any]], trigger: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["type"] == "turn" and e["trigger"] == trigger]


def test_each_served_conversation_is_one_trace(served: dict[str, Any]) -> None:
    assert "Your order 12345 is" in served["reply"]["reply"], served["reply"]
    roots = [s for t in served["traces"] for s in t if s.name == "conversation"]
    assert len(roots) == 2 and len(served["traces"]) == 2, [sorted(_named(t)) for t in served["traces"]]
    assert "Traceback" not in served["log"], served["log"]


def test_a_typed_invocation_is_traced_and_plays_nothing(served: dict[str, Any]) -> None:
    [entries] = [e for e in served["entries"] if _turns(e, "text")]
    [turn] = _turns(entries, "text")
    spans = _trace_of(served, "text")
    _check_conversation(spans, turn)
    # Nobody hears an invocation's speech: no "first sample played", in the entry or on the span.
    assert "speech_end_to_first_played_ms" not in turn, turn
    assert "agent_run.speech_end_to_first_played_ms" not in spans["turn 1"].attributes


def test_a_phone_call_is_traced_with_what_the_caller_heard(served: dict[str, Any]) -> None:
    [entries] = [e for e in served["entries"] if _turns(e, "speech")]
    turn = next(t for t in _turns(entries, "speech") if "speech_end_to_first_audio_ms" in t)
    assert turn["turn"] == 1, _turns(entries, "speech")
    spans = _trace_of(served, "speech")
    _check_conversation(spans, turn)
    played = spans["turn 1"].attributes["agent_run.speech_end_to_first_played_ms"]
    assert played == turn["speech_end_to_first_played_ms"] >= turn["speech_end_to_first_audio_ms"]


def test_the_figures_are_metrics_too(served: dict[str, Any]) -> None:
    assert served["metrics"], "no metrics export"
    metrics = served["metrics"][-1]  # cumulative: the last export has everything
    audio = metrics["agent_run.turn.speech_end_to_first_audio"]
    assert sum(p.count for p in audio) == 2  # one per conversation's turn
    played = metrics["agent_run.turn.speech_end_to_first_played"]
    assert sum(p.count for p in played) == 1  # the call's; the invocation played nothing
    tools = metrics["agent_run.tool.duration"]
    assert sum(p.count for p in tools) == 2
