"""OpenTelemetry: the one module that imports it (the optional `otel` extra).

Imported only when the OTEL_* variables configure an export (runner.telemetry.start_export). Per
conversation a trace: a `conversation` span (agent, policy, model, voice), a span per stream (its
set-up time, its error), per turn (latency figures, tokens, cost) and per tool call (name, duration,
error) under its turn. The same figures are histograms (ms) and the tokens and cost are counters.
Spans are made when what they measure has ended, with its measured start and end times, so nothing
is held open across the conversation's tasks.

Export is OTLP over HTTP/protobuf to where OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_/_METRICS_
forms) points; OTEL_TRACES_EXPORTER=none or OTEL_METRICS_EXPORTER=none turns one of them off.
OTEL_SERVICE_NAME defaults to `agent-run`. The providers are this process's own (not the global
ones), flushed at the end of a run within bounded time.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, Status, StatusCode

from runner.telemetry.turns import StreamTiming, Summary, TurnRecord

SCOPE = "agent-run"
# An unreachable collector must not hold a run's end: each export gives up after this long
# unless OTEL_EXPORTER_OTLP_TIMEOUT says otherwise.
EXPORT_TIMEOUT_S = 5.0

_HISTOGRAMS = {
    "speech_end_to_transcript_ms": "agent_run.turn.speech_end_to_transcript",
    "speech_end_to_first_audio_ms": "agent_run.turn.speech_end_to_first_audio",
    "speech_end_to_first_played_ms": "agent_run.turn.speech_end_to_first_played",
    "tool_ms": "agent_run.turn.tool_time",
}


@dataclass
class _Providers:
    tracer: TracerProvider | None
    meter: MeterProvider | None
    histograms: dict[str, Histogram]
    tool_duration: Histogram | None
    stream_setup: Histogram | None
    tokens: Counter | None
    cost: Counter | None


_providers: _Providers | None = None
_lock = threading.Lock()


def install(*, span_exporter: SpanExporter | None = None, metric_reader: MetricReader | None = None,
            simple: bool = False) -> None:
    """Use these exporters (tests: the SDK's in-memory ones; `simple` exports each span at once)."""
    global _providers
    with _lock:
        _shutdown_locked(1.0)
        _providers = _build(span_exporter, metric_reader, simple=simple)


def _from_environment() -> _Providers:
    env = os.environ
    timeout = None if env.get("OTEL_EXPORTER_OTLP_TIMEOUT") else EXPORT_TIMEOUT_S
    span_exporter = (None if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none"
                     else OTLPSpanExporter(timeout=timeout))
    reader = (None if env.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() == "none"
              else PeriodicExportingMetricReader(OTLPMetricExporter(timeout=timeout)))
    return _build(span_exporter, reader, simple=False)


def _build(span_exporter: SpanExporter | None, reader: MetricReader | None, *, simple: bool) -> _Providers:
    attributes: dict[str, Any] = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "agent-run"
    resource = Resource.create(attributes)
    tracer = None
    if span_exporter is not None:
        tracer = TracerProvider(resource=resource, shutdown_on_exit=False)
        tracer.add_span_processor(SimpleSpanProcessor(span_exporter) if simple
                                  else BatchSpanProcessor(span_exporter))
    meter_provider = None
    histograms: dict[str, Histogram] = {}
    tool = setup = None
    tokens = cost = None
    if reader is not None:
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        meter = meter_provider.get_meter(SCOPE)
        histograms = {key: meter.create_histogram(name, unit="ms") for key, name in _HISTOGRAMS.items()}
        tool = meter.create_histogram("agent_run.tool.duration", unit="ms", description="one tool call")
        setup = meter.create_histogram("agent_run.stream.setup", unit="ms",
                                       description="stream open request to the service's acceptance")
        tokens = meter.create_counter("agent_run.tokens", unit="{token}", description="from usageEvent")
        cost = meter.create_counter("agent_run.cost", unit="USD",
                                    description="estimated from the price table")
    return _Providers(tracer, meter_provider, histograms, tool, setup, tokens, cost)


def _get() -> _Providers:
    global _providers
    with _lock:
        if _providers is None:
            _providers = _from_environment()
            atexit.register(shutdown, 2.0)  # `serve` never calls shutdown itself
        return _providers


def shutdown(timeout_s: float = 2.0) -> None:
    """Export what is left, waiting at most about `timeout_s`, and stop the providers."""
    global _providers
    with _lock:
        _shutdown_locked(timeout_s)
        _providers = None


def _shutdown_locked(timeout_s: float) -> None:
    providers = _providers
    if providers is None:
        return
    if providers.tracer is not None:
        providers.tracer.force_flush(int(timeout_s * 1000))
    # shutdown() has no time limit of its own, and a stuck exporter must not hold the exit. The
    # meter provider's shutdown exports the metrics once more (a force_flush first would send them
    # twice).
    stoppers = [threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
                for provider in (providers.tracer, providers.meter) if provider is not None]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(timeout_s)


class ConversationTrace:
    """One conversation's spans and metric samples (a TelemetryExport)."""

    def __init__(self, *, model_id: str, labels: Mapping[str, str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._p = _get()
        # The conversation's times are its monotonic clock; spans want wall-clock nanoseconds.
        self._mono0 = clock()
        self._wall0 = time.time_ns()
        self._attributes: dict[str, str] = {"agent_run.model": model_id, "gen_ai.request.model": model_id}
        self._attributes.update({f"agent_run.{k}": v for k, v in labels.items()})
        self._metric_attributes = {k: v for k, v in self._attributes.items()
                                   if k in ("agent_run.model", "agent_run.agent")}
        self._root: Span | None = None
        self._context: Any = None
        if self._p.tracer is not None:
            tracer = self._p.tracer.get_tracer(SCOPE)
            self._tracer = tracer
            self._root = tracer.start_span("conversation", attributes=self._attributes,
                                           start_time=self._ns(self._mono0))
            self._context = trace.set_span_in_context(self._root)

    def _ns(self, at: float) -> int:
        return self._wall0 + int((at - self._mono0) * 1e9)

    def annotate(self, **attributes: str) -> None:
        """More about the conversation (the voice, known once the first stream is set up)."""
        self._attributes.update({f"agent_run.{k}": v for k, v in attributes.items()})
        if self._root is not None:
            self._root.set_attributes({f"agent_run.{k}": v for k, v in attributes.items()})

    def stream_closed(self, timing: StreamTiming) -> None:
        setup = timing.setup_ms
        if setup is not None and self._p.stream_setup is not None:
            self._p.stream_setup.record(setup, self._metric_attributes)
        if self._root is None:
            return
        end = timing.closed_at if timing.closed_at is not None else timing.opened_at
        span = self._tracer.start_span(f"stream {timing.index}", context=self._context,
                                       start_time=self._ns(timing.opened_at), attributes=self._attributes)
        span.set_attribute("agent_run.stream", timing.index)
        if setup is not None:
            span.set_attribute("agent_run.stream.setup_ms", round(setup, 1))
        if timing.error is not None:
            span.set_attribute("error.type", timing.error)
            span.set_status(Status(StatusCode.ERROR, timing.error))
        span.end(end_time=self._ns(end))

    def turn_finished(self, record: TurnRecord) -> None:
        figures = record.figures
        for key, histogram in self._p.histograms.items():
            if key in figures:
                histogram.record(figures[key],
                                 {**self._metric_attributes, "agent_run.trigger": record.trigger})
        for tool in record.tools:
            if self._p.tool_duration is not None:
                self._p.tool_duration.record(tool.duration_ms, {**self._metric_attributes,
                                                                "gen_ai.tool.name": tool.name,
                                                                "agent_run.tool.ok": tool.ok})
        t = record.tokens
        if self._p.tokens is not None:
            for kind, count in (("input_speech", t.input_speech), ("input_text", t.input_text),
                                ("output_speech", t.output_speech), ("output_text", t.output_text)):
                if count:
                    self._p.tokens.add(count, {**self._metric_attributes, "agent_run.token.kind": kind})
        if self._p.cost is not None and record.cost_usd:
            self._p.cost.add(record.cost_usd, self._metric_attributes)
        if self._root is not None:
            self._turn_span(record)

    def _turn_span(self, record: TurnRecord) -> None:
        start = record.started_at if record.speech_end_at is None else min(record.speech_end_at,
                                                                          record.started_at)
        span = self._tracer.start_span(f"turn {record.number}", context=self._context,
                                       start_time=self._ns(start), attributes=self._attributes)
        t = record.tokens
        span.set_attributes({
            "agent_run.turn": record.number, "agent_run.trigger": record.trigger,
            "agent_run.interrupted": record.interrupted,
            "gen_ai.usage.input_tokens": t.input_speech + t.input_text,
            "gen_ai.usage.output_tokens": t.output_speech + t.output_text,
            "agent_run.tokens.input_speech": t.input_speech, "agent_run.tokens.input_text": t.input_text,
            "agent_run.tokens.output_speech": t.output_speech, "agent_run.tokens.output_text": t.output_text,
            **{f"agent_run.{key}": value for key, value in record.figures.items()},
        })
        if record.stream is not None:
            span.set_attribute("agent_run.stream", record.stream)
        if record.cost_usd is not None:
            span.set_attribute("agent_run.cost_usd", round(record.cost_usd, 6))
        context = trace.set_span_in_context(span)
        for tool in record.tools:
            attributes: dict[str, str | bool | float] = {
                "gen_ai.tool.name": tool.name, "agent_run.tool.ok": tool.ok,
                "agent_run.tool.duration_ms": round(tool.duration_ms, 1)}
            child = self._tracer.start_span(f"tool {tool.name}", context=context,
                                            start_time=self._ns(tool.started_at), attributes=attributes)
            if tool.error is not None:
                child.set_attribute("error.type", "tool_error")
                child.set_status(Status(StatusCode.ERROR, tool.error[:200]))
            child.end(end_time=self._ns(tool.started_at + tool.duration_ms / 1000))
        span.end(end_time=self._ns(max(record.ended_at, start)))

    def conversation_finished(self, summary: Summary, *, error: str | None) -> None:
        if self._root is None:
            return
        t = summary.tokens
        self._root.set_attributes({"agent_run.turns": summary.turns,
                                   "gen_ai.usage.input_tokens": t.input_speech + t.input_text,
                                   "gen_ai.usage.output_tokens": t.output_speech + t.output_text})
        if summary.cost_usd is not None:
            self._root.set_attribute("agent_run.cost_usd", round(summary.cost_usd, 6))
        if error is not None:
            self._root.set_attribute("error.type", "run_failed")
            self._root.set_status(Status(StatusCode.ERROR, error[:200]))
        self._root.end()
