"""OpenTelemetry: spans and metrics with the SDK's in-memory exporters (synchronously, and through a
real in-process run: the real SDK over TLS against the emulator)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the `otel` extra is not installed")

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from runner import telemetry
from runner.config.loader import load_agent
from runner.console import Console
from runner.conversation import QueueTextInput
from runner.engine import RunOptions, run_agent
from runner.protocol.events import TokenCounts
from runner.telemetry import otel
from runner.telemetry.prices import BUILTIN_TABLE
from runner.telemetry.turns import ToolTiming, TurnTracker
from tests.conversation.text_run_helpers import EndOfTurn, KeepConversation

REPO = Path(__file__).resolve().parents[2]
NOVA2 = "amazon.nova-2-sonic-v1:0"


@pytest.fixture
def exported() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    otel.install(span_exporter=spans, metric_reader=metrics, simple=True)
    yield spans, metrics
    otel.shutdown(1.0)


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_a_conversation_is_a_trace_of_streams_turns_and_tool_calls(
        exported: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    span_exporter, reader = exported
    now = [100.0]
    trace = otel.ConversationTrace(model_id=NOVA2, labels={"agent": "orders", "policy": "barge-in"},
                                   clock=lambda: now[0])
    trace.annotate(voice="tiffany")
    tracker = TurnTracker(model_id=NOVA2, prices=BUILTIN_TABLE, on_turn=trace.turn_finished)
    tracker.stream_opened(1, 100.0)
    tracker.stream_accepted(1, 100.2)
    tracker.mic_loud(101.0)
    tracker.user_heard(101.7)
    tracker.usage(TokenCounts(input_speech=50, output_speech=80))
    tracker.assistant_audio(102.0)
    tracker.tool_finished(ToolTiming("trackOrderTool", 30.0, True, 102.1))
    tracker.tool_finished(ToolTiming("broken", 5.0, False, 102.2, error="ValueError: no"))
    closed = tracker.stream_closed(1, 104.0, "StreamReset")
    assert closed is not None
    trace.stream_closed(closed)
    summary = tracker.finish(104.5)
    trace.conversation_finished(summary, error=None)

    spans = by_name(span_exporter.get_finished_spans())
    assert set(spans) == {"conversation", "stream 1", "turn 1", "tool trackOrderTool", "tool broken"}
    root = spans["conversation"]
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["agent_run.model"] == NOVA2 and root.attributes["agent_run.agent"] == "orders"
    assert root.attributes["agent_run.voice"] == "tiffany"
    assert root.attributes["gen_ai.usage.input_tokens"] == 50
    root_id = root.context.span_id
    assert spans["stream 1"].parent is not None and spans["stream 1"].parent.span_id == root_id
    assert spans["stream 1"].status.status_code is StatusCode.ERROR
    assert spans["stream 1"].attributes is not None
    assert spans["stream 1"].attributes["agent_run.stream.setup_ms"] == pytest.approx(200.0)
    turn = spans["turn 1"]
    assert turn.parent is not None and turn.parent.span_id == root_id
    assert turn.attributes is not None
    assert turn.attributes["agent_run.speech_end_to_first_audio_ms"] == pytest.approx(1000.0)
    assert turn.attributes["gen_ai.usage.output_tokens"] == 80
    assert turn.attributes["agent_run.voice"] == "tiffany"
    assert turn.start_time is not None and turn.end_time is not None
    assert (turn.end_time - turn.start_time) / 1e9 == pytest.approx(3.5)  # speech end -> the turn's end
    tool = spans["tool trackOrderTool"]
    assert tool.parent is not None and tool.parent.span_id == turn.context.span_id
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "trackOrderTool"
    assert tool.end_time is not None and tool.start_time is not None
    assert (tool.end_time - tool.start_time) / 1e6 == pytest.approx(30.0)
    assert spans["tool broken"].status.status_code is StatusCode.ERROR
    assert spans["tool broken"].status.description == "ValueError: no"
    assert len({s.context.trace_id for s in spans.values()}) == 1

    points = metric_points(reader)
    [audio] = points["agent_run.turn.speech_end_to_first_audio"]
    assert audio.count == 1 and audio.sum == pytest.approx(1000.0)
    assert sorted(p.attributes["gen_ai.tool.name"] for p in points["agent_run.tool.duration"]) == [
        "broken", "trackOrderTool"]
    assert sum(p.value for p in points["agent_run.tokens"]) == 130
    [setup] = points["agent_run.stream.setup"]
    assert setup.sum == pytest.approx(200.0)
    assert points["agent_run.cost"][0].value == pytest.approx(summary.cost_usd)


def test_a_failed_run_marks_the_conversation_span(
        exported: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    span_exporter, _ = exported
    trace = otel.ConversationTrace(model_id=NOVA2, labels={})
    tracker = TurnTracker(model_id=NOVA2, prices=BUILTIN_TABLE, on_turn=trace.turn_finished)
    trace.conversation_finished(tracker.finish(1.0), error="cannot reach the endpoint")
    [root] = span_exporter.get_finished_spans()
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "cannot reach the endpoint"


@pytest.mark.usefixtures("restore_environ")
def test_a_real_run_is_traced_with_model_voice_agent_tool_and_tokens(
        exported: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    span_exporter, reader = exported
    # Configured (the installed in-memory exporters are used, nothing is sent there).
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    agent = load_agent(REPO / "agents" / "orders.yaml")
    text, ended, observer = QueueTextInput(), EndOfTurn(), KeepConversation()
    options = RunOptions(emulate=True, scenario=REPO / "samples" / "orders.scenario.yaml", text=True,
                         text_input=text, mute=True, taps=(ended,), idle_exit_s=0.5)

    async def main() -> int:
        async with asyncio.timeout(60):
            run = asyncio.create_task(run_agent(agent, options, Console(quiet=True), observer))
            await text.put("Where is my order 12345?")
            await ended.ended.wait()
            await text.put(None)
            return await run

    assert asyncio.run(main()) == 0
    spans = by_name(span_exporter.get_finished_spans())
    assert {"conversation", "stream 1", "turn 1", "tool trackOrderTool"} <= set(spans), sorted(spans)
    root = spans["conversation"]
    assert root.attributes is not None
    assert root.attributes["agent_run.model"] == agent.model.id
    assert root.attributes["agent_run.voice"] == agent.voice
    assert root.attributes["agent_run.agent"] == agent.name
    turn = spans["turn 1"]
    assert turn.attributes is not None
    assert turn.attributes["agent_run.trigger"] == "text"
    assert turn.attributes["gen_ai.usage.output_tokens"] > 0
    assert 0 < turn.attributes["agent_run.speech_end_to_first_audio_ms"] < 10_000
    assert spans["tool trackOrderTool"].parent is not None
    assert spans["tool trackOrderTool"].parent.span_id == turn.context.span_id
    points = metric_points(reader)
    assert points["agent_run.turn.speech_end_to_first_audio"][0].count == 1
    assert observer.conversation is not None
    [entry] = [e for e in observer.conversation.transcript.entries if e["type"] == "turn"]
    assert entry["tokens"]["total"] == turn.attributes["gen_ai.usage.input_tokens"] + \
        turn.attributes["gen_ai.usage.output_tokens"]


def test_nothing_is_configured_without_otel_variables() -> None:
    assert not telemetry.otel_configured({})
    assert not telemetry.otel_configured({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_EXPORTER": "none"})
    assert telemetry.otel_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert telemetry.otel_configured({"OTEL_METRICS_EXPORTER": "otlp"})
    assert not telemetry.otel_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
                                          "OTEL_SDK_DISABLED": "true"})
    assert telemetry.start_export(model_id=NOVA2, labels={}, environ={}) is None
