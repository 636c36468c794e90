"""The worker reports its event loop's lag in /metrics (what bench/bench_serve.py reads)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from runner.serve.metrics import Metrics
from tests.serve.serve_helpers import ServeProcess


def _sample(metrics: Metrics, name: str, le: str | None = None) -> float:
    labels = {"le": le} if le is not None else {}
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_a_blocked_loop_shows_as_lag() -> None:
    metrics = Metrics()

    async def run() -> None:
        watch = asyncio.create_task(metrics.watch_loop(0.01))
        await asyncio.sleep(0.05)  # a few on-time wake-ups
        time.sleep(0.12)  # noqa: ASYNC251 -- the point: the loop is blocked, the next wake-up ~110 ms late
        await asyncio.sleep(0.05)
        watch.cancel()

    asyncio.run(run())
    count = _sample(metrics, "agent_run_event_loop_lag_seconds_count")
    on_time = _sample(metrics, "agent_run_event_loop_lag_seconds_bucket", "0.02")
    assert count >= 4
    assert count - on_time == 1  # exactly the one late wake-up
    assert _sample(metrics, "agent_run_event_loop_lag_seconds_bucket", "0.05") == on_time
    assert _sample(metrics, "agent_run_event_loop_lag_seconds_bucket", "0.25") == count


def test_the_server_exposes_its_loop_lag(tmp_path: Path) -> None:
    with ServeProcess(tmp_path) as server:
        server.wait_ready()
        time.sleep(0.3)
        assert server.metric("agent_run_event_loop_lag_seconds_count") >= 3
        assert server.metric("agent_run_event_loop_lag_seconds_sum") >= 0
