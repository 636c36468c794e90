"""Prometheus metrics of one server (the only module that imports prometheus_client).

Each server has its own CollectorRegistry (not the process-global one), so two apps in one
process (tests) never share counters. What is measured:
- live conversations (gauge; also per agent), conversations started/refused (counters), turns
  (per agent), tool calls and tool errors, stream rotations and reconnects, conversation errors;
- latency histograms: the user's end of speech (or typed line) to the first assistant audio,
  tool duration, and stream setup (request sent to the service's acceptance);
- the event loop's lag: how late a periodic wake-up runs (`watch_loop`), the figure that shows a
  worker with too many conversations before callers hear gaps.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from runner.protocol.events import AudioOutput
from runner.transports.base import ConnectorWrapper

if TYPE_CHECKING:
    from runner.protocol.events import OutputEvent
    from runner.transports.base import Connector, Stream

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LOOP_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)
LOOP_LAG_PERIOD_S = 0.05
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.live = Gauge("agent_run_live_conversations", "Conversations in progress", registry=r)
        # The same per agent (`serve A.yaml B.yaml`); the total above stays unlabelled for autoscalers.
        self.agent_live = Gauge("agent_run_agent_live_conversations", "Conversations in progress, per agent",
                                ["agent"], registry=r)
        self.conversations = Counter("agent_run_conversations", "Conversations started", registry=r)
        self.refused = Counter("agent_run_refused_callers", "Callers refused (full or draining)",
                               ["reason"], registry=r)
        self.errors = Counter("agent_run_conversation_errors", "Conversations that ended with an error",
                              registry=r)
        self.turns = Counter("agent_run_turns", "Assistant answers (turns)", ["agent"], registry=r)
        self.tool_calls = Counter("agent_run_tool_calls", "Tool calls", ["tool"], registry=r)
        self.tool_errors = Counter("agent_run_tool_errors", "Tool calls that failed", ["tool"], registry=r)
        self.rotations = Counter("agent_run_stream_rotations", "Streams opened to continue a conversation "
                                 "(8-minute limit, credential refresh)", registry=r)
        self.reconnects = Counter("agent_run_stream_reconnects", "Streams reopened after an error",
                                  registry=r)
        self.response_latency = Histogram(
            "agent_run_response_latency_seconds", "User's end of speech (or typed line) to first assistant "
            "audio", buckets=_LATENCY_BUCKETS, registry=r)
        self.tool_duration = Histogram("agent_run_tool_duration_seconds", "Tool call duration",
                                       ["tool"], buckets=_LATENCY_BUCKETS, registry=r)
        self.stream_setup = Histogram("agent_run_stream_setup_seconds", "Stream request to acceptance",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.loop_lag = Histogram("agent_run_event_loop_lag_seconds", "How late the event loop runs a "
                                  f"wake-up due every {LOOP_LAG_PERIOD_S} s", buckets=_LOOP_LAG_BUCKETS,
                                  registry=r)
        # Phone calls (Twilio): assistant audio sent, heard (confirmed by marks), cut by barge-ins.
        self.phone_audio = Counter("agent_run_phone_audio_seconds", "Assistant audio on phone calls",
                                   ["what"], registry=r)
        self.phone_barge_ins = Counter("agent_run_phone_barge_ins", "Barge-ins (clear) on phone calls",
                                       registry=r)

    def phone_call(self, *, sent_s: float, heard_s: float, cut_s: float, barge_ins: int) -> None:
        """Count what one phone call's caller was sent, heard, and had cut (at the call's end)."""
        for what, seconds in (("sent", sent_s), ("heard", heard_s), ("cut", cut_s)):
            self.phone_audio.labels(what=what).inc(seconds)
        self.phone_barge_ins.inc(barge_ins)

    async def watch_loop(self, period_s: float = LOOP_LAG_PERIOD_S) -> None:
        """Observe the event loop's lag every `period_s` until cancelled (a task of the server)."""
        while True:
            due = time.monotonic() + period_s
            await asyncio.sleep(period_s)
            self.loop_lag.observe(max(0.0, time.monotonic() - due))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def transcript_entry(self, entry: dict[str, Any], agent: str = "") -> None:
        """Count what a conversation of `agent` records in its transcript (called for every entry)."""
        kind = entry.get("type")
        if kind == "assistant":
            self.turns.labels(agent=agent).inc()
        elif kind == "tool_call":
            self.tool_calls.labels(tool=str(entry.get("name"))).inc()
        elif kind == "tool_result":
            tool = str(entry.get("name"))
            if "error" in entry:
                self.tool_errors.labels(tool=tool).inc()
            if isinstance(duration := entry.get("duration_ms"), int | float):
                self.tool_duration.labels(tool=tool).observe(duration / 1000)
        elif kind == "session" and entry.get("event") == "start" and entry.get("stream", 1) != 1:
            reason = str(entry.get("reason", ""))
            (self.reconnects if reason.startswith("reconnect") else self.rotations).inc()

    def latency_tap(self) -> LatencyTap:
        return LatencyTap(self)

    def metered(self, connector: Connector) -> Connector:
        return MeteredConnector(connector, self)


class LatencyTap:
    """An EventTap: from the user's end of speech (or typed line) to the first assistant audio."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._since: float | None = None

    def output(self, event: OutputEvent, at: float) -> None:
        if isinstance(event, AudioOutput) and self._since is not None:
            self._metrics.response_latency.observe(max(0.0, at - self._since))
            self._since = None

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        if (kind == "audio" and fields.get("speaking") is False) or kind == "user_text":
            self._since = at


class MeteredConnector(ConnectorWrapper):
    """A Connector whose streams report their setup time (open to the service's acceptance)."""

    def __init__(self, inner: Connector, metrics: Metrics) -> None:
        super().__init__(inner)
        self._metrics = metrics

    async def open_stream(self, model_id: str) -> Stream:
        return _MeteredStream(await self._inner.open_stream(model_id), self._metrics, time.monotonic())



class _MeteredStream:
    def __init__(self, inner: Stream, metrics: Metrics, opened_at: float) -> None:
        self._inner = inner
        self._metrics = metrics
        self._opened_at: float | None = opened_at

    async def send(self, payload: bytes) -> None:
        await self._inner.send(payload)

    async def wait_accepted(self) -> None:
        await self._inner.wait_accepted()
        if self._opened_at is not None:
            self._metrics.stream_setup.observe(time.monotonic() - self._opened_at)
            self._opened_at = None

    async def receive(self) -> bytes | None:
        return await self._inner.receive()

    async def close_input(self, limit_s: float) -> None:
        await self._inner.close_input(limit_s)

    async def aclose(self) -> None:
        await self._inner.aclose()
