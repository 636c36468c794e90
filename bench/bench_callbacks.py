"""Where a real-time session's CPU goes, per asyncio callback and per thread (issue 11).

One run of a client from bench_runner.py (the runner, or the sample-style baseline at 64 ms or
32 ms microphone chunks), against its own `agent-run emulate` child, with:
- every asyncio callback timed in CPU time (`time.thread_time`, so waiting is not counted) and named
  by the task it steps (its coroutine) or the function it calls; printed as % of one core, calls
  per second and µs per call. This names what a wake-up costs, where bench_runner only totals it.
- the selector's `select` calls (the loop blocking and waking) and their own CPU.
- each thread's CPU from /proc (Linux): the loop thread, awscrt's event-loop thread (TLS, HTTP/2,
  socket writes: C, outside the loop), and the default executor's threads.
Wrapping every callback costs a little CPU itself, so compare figures of this script with each
other, not with bench_runner's totals.

    PYTHONPATH=. .venv/bin/python bench/bench_callbacks.py [--client runner|baseline|baseline32]
        [--quick] [--top 20]
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import collections
import os
import selectors
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_runner as br

CPU: collections.Counter[str] = collections.Counter()
CALLS: collections.Counter[str] = collections.Counter()
SELECT = [0, 0]  # ns of CPU in select(), calls


def callback_name(handle: asyncio.Handle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return "task " + getattr(owner.get_coro(), "__qualname__", "?")
    return getattr(callback, "__qualname__", repr(callback))


def instrument() -> None:
    """Time every handle run and every select (this process only; nothing in runner/ changes)."""
    run: Callable[[Any], None] = asyncio.events.Handle._run
    select = selectors.EpollSelector.select

    def timed_run(self: asyncio.Handle) -> None:
        t = time.thread_time_ns()
        run(self)
        name = callback_name(self)
        CPU[name] += time.thread_time_ns() - t
        CALLS[name] += 1

    def timed_select(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
        t = time.thread_time_ns()
        try:
            return select(self, timeout)
        finally:
            SELECT[0] += time.thread_time_ns() - t
            SELECT[1] += 1

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    selectors.EpollSelector.select = timed_select  # type: ignore[method-assign]


def thread_cpu() -> dict[tuple[str, str], float]:
    """CPU seconds of each thread of this process, keyed by (tid, name)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[str, str], float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_group(tid: str, name: str) -> str:
    if tid == str(os.getpid()):
        return "loop thread (main)"
    return name.rstrip("0123456789 ") or name


async def measure(client: str, cycles: int) -> None:
    seconds = br.cycle_seconds() * cycles + 1.0
    with tempfile.TemporaryDirectory() as tmp:
        scenario, pcm, wav = br.write_inputs(Path(tmp), cycles)

        async def run_once(length: float) -> br.RunResult:
            if client == "runner":
                return await br.run_runner(wav, length)
            return await br.run_baseline(pcm, length, 1024 if client == "baseline" else 512)

        async with br.emulator_process(scenario) as env:
            os.environ.update(env)
            await run_once(3.0)  # imports, first connection: not what a session costs
            CPU.clear()
            CALLS.clear()
            SELECT[:] = [0, 0]
            before, t0 = thread_cpu(), time.monotonic()
            result = await run_once(seconds)
            wall = time.monotonic() - t0
            after = thread_cpu()
    report(client, result, wall, before, after)


def report(client: str, result: br.RunResult, wall: float, before: dict[tuple[str, str], float],
           after: dict[tuple[str, str], float], top: int | None = None) -> None:
    top = top or ARGS.top
    print(f"{client}: {wall:.1f} s; CPU per real-time session (bench_runner's figure a): "
          f"{result.cpu_per_s * 100:.2f} % of a core\n")
    threads: collections.Counter[str] = collections.Counter()
    for key, value in after.items():
        threads[thread_group(*key)] += value - before.get(key, 0.0)
    print("per thread (% of one core over the run; /proc ticks, 10 ms resolution):")
    for name, value in threads.most_common():
        if value > 0:
            print(f"   {name:28}: {value / wall * 100:5.2f} %")
    total = sum(CPU.values())
    print(f"\nloop: select {SELECT[1] / wall:5.0f}/s, {SELECT[0] / 1e9 / wall * 100:.2f} % of a core;"
          f" callbacks {sum(CALLS.values()) / wall:5.0f}/s, {total / 1e9 / wall * 100:.2f} %")
    print(f"   {'% of a core':>11} {'calls/s':>8} {'µs/call':>8}  callback")
    for name, ns in CPU.most_common(top):
        share, rate, each = ns / 1e9 / wall * 100, CALLS[name] / wall, ns / CALLS[name] / 1e3
        print(f"   {share:9.3f} % {rate:8.1f} {each:8.1f}  {name}")


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=["runner", "baseline", "baseline32"], default="runner",
                        help="runner, or the sample-style baseline at 64 ms (baseline) or 32 ms mic chunks")
    parser.add_argument("--cycles", type=int, default=2, help="question/interruption cycles (8.1 s each)")
    parser.add_argument("--top", type=int, default=20, help="callbacks listed")
    parser.add_argument("--quick", action="store_true", help="one cycle (CI)")
    ARGS = parser.parse_args()
    if ARGS.quick:
        ARGS.cycles = 1
    instrument()
    asyncio.run(measure(ARGS.client, ARGS.cycles))


ARGS = argparse.Namespace(top=20)

if __name__ == "__main__":
    sys.exit(main())
