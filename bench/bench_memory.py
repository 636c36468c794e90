"""Memory: what one process retains per conversation, over N conversations one after another.

Each conversation is the real engine (`run_agent`, agents/orders.yaml, barge-in policy, tools,
transcript in memory, muted sink) through the real aws-sdk-bedrock-runtime client over TLS, with
typed input (a `QueueTextInput`: one line, the answer, end of input) or with --wav a short WAV
(samples/what_time_is_it.wav, heard by the emulator's speech recognition when installed)
and a small idle exit. The scenario answers every line with a
tool call (trackOrderTool) and "Done.", so a conversation takes about a second (text) or
three (WAV).

Where the emulator runs (--mode):
  per-run   `RunOptions(emulate=True)`: a fresh in-process emulator AND SDK client per
            conversation, exactly as `agent-run AGENT --emulate` does (runner + emulator together).
  shared    one in-process emulator for all conversations; each conversation still builds its
            own SDK client (what `run_agent(emulate=False)` does), like a worker behind one model.
  external  `agent-run emulate --quiet` in a child process: this process holds only the runner;
            the child's RSS is sampled too, so what the emulator retains is reported apart.

After each conversation: gc.collect(), then RSS (/proc/self/status VmRSS), Python objects tracked
by gc, threads and open fds (and the emulator child's RSS in external mode). "Retained per
conversation" is the least-squares slope after --warmup conversations (allocator pools, caches and
the first-use imports settle in the first few); RSS spikes for a conversation and falls back, so
the "floor" growth (lowest RSS of the last 5 against the lowest of #2-#6) is what stays. --types
prints the object types whose count grew most between the warm-up and the end; --tracemalloc also
takes snapshots and prints the top growth grouped by traceback (tracemalloc's own tables inflate
RSS, so RSS figures of such a run are not comparable). --json prints one JSON object (used by
tests/serve_memory).

    .venv/bin/python bench/bench_memory.py [--quick] [-n 200] [--mode per-run|shared|external|all]
        [--wav] [--types] [--tracemalloc] [--glibc-arenas]

Like a server, the bench caps glibc's malloc arenas first (runner.allocator); --glibc-arenas
measures glibc's defaults instead (RSS then grows in steps while threads take turns at large
buffers: see runner/allocator.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from _common import SAMPLES

from runner.allocator import limit_malloc_arenas
from runner.config.loader import load_agent
from runner.config.model import AgentConfig
from runner.console import Console
from runner.conversation import QueueTextInput
from runner.engine import RunOptions, run_agent
from runner.protocol.events import ContentEnd, OutputEvent

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agents" / "orders.yaml"
WAV = SAMPLES / "what_time_is_it.wav"  # 1.3 s
LINE = "Where is my order 12345?"
SCENARIO = """\
description: every input gets a tool call and a short answer (bench_memory)
fallback:
  - tool: trackOrderTool
    input: {orderId: "12345"}
  - say: "Done."
settings:
  speech_end_ms: 400
  speed: 8
"""
CONVERSATION_TIMEOUT_S = 30.0
MODES = ("per-run", "shared", "external")
WINDOW = 5


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def slope(ys: Sequence[float]) -> float:
    """Least-squares slope of ys against 0..n-1 (per conversation)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def type_counts() -> Counter[str]:
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


class AnswerEnded:
    """A tap that wakes the driver when the answer's turn ends (END_TURN)."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    def output(self, event: OutputEvent, at: float) -> None:
        if isinstance(event, ContentEnd) and event.stop_reason == "END_TURN":
            self.ended.set()

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        pass


async def one_conversation(agent: AgentConfig, scenario: Path, *, emulate: bool, wav: bool) -> int:
    async with asyncio.timeout(CONVERSATION_TIMEOUT_S):
        if wav:
            options = RunOptions(emulate=emulate, scenario=scenario if emulate else None, input_file=WAV,
                                 mute=True, idle_exit_s=0.7)
            return await run_agent(agent, options, Console(quiet=True))
        text, tap = QueueTextInput(), AnswerEnded()
        options = RunOptions(emulate=emulate, scenario=scenario if emulate else None, text=True,
                             text_input=text, mute=True, taps=(tap,), idle_exit_s=0.3)
        run = asyncio.create_task(run_agent(agent, options, Console(quiet=True)))
        await text.put(LINE)
        await tap.ended.wait()
        await text.put(None)
        return await run


@contextlib.asynccontextmanager
async def emulator_process(scenario: Path) -> AsyncIterator[tuple[int, dict[str, str]]]:
    """`agent-run emulate --quiet` in a child process: its pid and the environment it prints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "emulate", "--quiet", "--scenario", str(scenario),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    env: dict[str, str] = {}
    try:
        async with asyncio.timeout(30):
            while not (line := (await proc.stdout.readline()).decode()).startswith("#"):
                if not line:
                    raise RuntimeError("the emulator exited before it listened")
                for token in line.removeprefix("export ").split():
                    key, _, value = token.partition("=")
                    env[key] = value
        yield proc.pid, env
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@contextlib.asynccontextmanager
async def where(mode: str, scenario: Path) -> AsyncIterator[tuple[bool, Callable[[], float | None]]]:
    """Sets up the emulator for `mode`: (emulate per run?, the emulator child's RSS or None)."""
    saved = dict(os.environ)
    try:
        if mode == "per-run":
            yield True, lambda: None
        elif mode == "shared":
            from runner.emulator.local import local_emulator

            async with local_emulator(scenario) as emulator:
                os.environ.update(emulator.env())
                yield False, lambda: None
        else:
            async with emulator_process(scenario) as (pid, env):
                os.environ.update(env)
                yield False, lambda: rss_mb(pid)
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def measure(mode: str, n: int, *, wav: bool, warmup: int, types: bool, traced: bool,
                  scenario: Path, progress: bool) -> dict[str, Any]:
    agent = load_agent(AGENT)
    rows: list[dict[str, float]] = []
    base_types: Counter[str] | None = None
    base_snapshot: tracemalloc.Snapshot | None = None
    started = time.monotonic()
    async with where(mode, scenario) as (emulate, emulator_rss):
        saved = dict(os.environ)
        for i in range(n):
            t0 = time.monotonic()
            code = await one_conversation(agent, scenario, emulate=emulate, wav=wav)
            os.environ.clear()  # a per-run emulator exports its CA and keys; start each run clean
            os.environ.update(saved)
            if code != 0:
                raise RuntimeError(f"conversation {i} exited {code}")
            gc.collect()
            row = {"i": i, "seconds": time.monotonic() - t0, "rss_mb": rss_mb(),
                   "objects": len(gc.get_objects()),
                   "threads": threading.active_count(), "os_threads": len(os.listdir("/proc/self/task")),
                   "fds": open_fds(),
                   "tasks": len(asyncio.all_tasks())}
            if (child := emulator_rss()) is not None:
                row["emulator_rss_mb"] = child
            if traced:
                row["traced_mb"] = tracemalloc.get_traced_memory()[0] / 1e6
            rows.append(row)
            if i == warmup - 1:
                if types:
                    base_types = type_counts()
                if traced:
                    base_snapshot = tracemalloc.take_snapshot()
            if progress:
                print(f"  {mode} #{i}: {row['seconds']:.2f} s, RSS {row['rss_mb']:.1f} MB, "
                      f"{row['objects']} objects" + (f", emulator {child:.1f} MB" if child else ""),
                      file=sys.stderr, flush=True)
    result: dict[str, Any] = {"mode": mode, "input": "wav" if wav else "text", "conversations": n,
                              "warmup": warmup, "wall_s": time.monotonic() - started, "rows": rows}
    after = rows[warmup:]
    for key in ("rss_mb", "objects", "emulator_rss_mb", "traced_mb"):
        if after and key in after[0]:
            result[f"{key}_per_conversation"] = slope([r[key] for r in after])
    # RSS spikes for a conversation or two and falls back (freed memory the allocator returns):
    # what is retained raises the floor, so compare the lowest RSS of the last WINDOW conversations
    # with the lowest of the first WINDOW after #1 (which pays the first-use imports and loads).
    result["rss_floor_growth_mb"] = (min(r["rss_mb"] for r in rows[-WINDOW:])
                                     - min(r["rss_mb"] for r in rows[1:1 + WINDOW]))
    if base_types is not None:
        grown = type_counts()
        grown.subtract(base_types)
        result["types_grown"] = [(k, v) for k, v in grown.most_common(15) if v > 0]
    if base_snapshot is not None:
        stats = tracemalloc.take_snapshot().compare_to(base_snapshot, "traceback")
        result["traced_growth"] = [
            {"kb": s.size_diff / 1e3, "count": s.count_diff,
             "where": [f"{f.filename.removeprefix(str(ROOT) + '/')}:{f.lineno}" for f in s.traceback][-6:]}
            for s in stats[:12]]
    return result


def report(result: dict[str, Any]) -> None:
    rows = result["rows"]
    w = result["warmup"]
    seconds = sorted(r["seconds"] for r in rows)
    arenas = "malloc arenas capped" if result["malloc_arenas_capped"] else "glibc's default malloc arenas"
    print(f"\n{result['mode']} ({result['input']} input, {arenas}): {result['conversations']} "
          f"conversations in {result['wall_s']:.0f} s (median {seconds[len(seconds) // 2]:.2f} s each)")
    print(f"  RSS after #1 {rows[0]['rss_mb']:.1f} MB, after warm-up #{w} {rows[w - 1]['rss_mb']:.1f} MB, "
          f"after #{len(rows)} {rows[-1]['rss_mb']:.1f} MB")
    print(f"  RSS floor (lowest of 5) from #2-#6 to the last 5: {result['rss_floor_growth_mb']:+.1f} MB")
    print(f"  retained per conversation after warm-up: RSS {result['rss_mb_per_conversation'] * 1e3:.1f} kB, "
          f"gc objects {result['objects_per_conversation']:.1f}")
    if "emulator_rss_mb_per_conversation" in result:
        print(f"  emulator process: {rows[0]['emulator_rss_mb']:.1f} -> "
              f"{rows[-1]['emulator_rss_mb']:.1f} MB, "
              f"{result['emulator_rss_mb_per_conversation'] * 1e3:.1f} kB per conversation")
    if "traced_mb_per_conversation" in result:
        print(f"  tracemalloc traced: {result['traced_mb_per_conversation'] * 1e3:.1f} kB per conversation")
    print(f"  threads {rows[w - 1]['threads']} -> {rows[-1]['threads']} "
          f"(OS threads {rows[w - 1]['os_threads']} -> {rows[-1]['os_threads']}), "
          f"fds {rows[w - 1]['fds']} -> {rows[-1]['fds']}, tasks {rows[-1]['tasks']}")
    for name, count in result.get("types_grown", []):
        print(f"    +{count:5d} {name}")
    for stat in result.get("traced_growth", []):
        print(f"    {stat['kb']:+8.1f} kB {stat['count']:+6d}  " + " <- ".join(reversed(stat["where"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--conversations", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="40 conversations")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all")
    parser.add_argument("--wav", action="store_true", help="a short WAV instead of typed input")
    parser.add_argument("--types", action="store_true", help="gc object types that grew")
    parser.add_argument("--tracemalloc", action="store_true", help="top traced growth by traceback")
    parser.add_argument("--json", action="store_true", help="one JSON object per mode on stdout")
    parser.add_argument("--progress", action="store_true", help="a line per conversation on stderr")
    parser.add_argument("--glibc-arenas", action="store_true",
                        help="leave glibc's malloc arenas at their default (8 per core) instead of the "
                             "cap `agent-run emulate` and servers set (runner.allocator)")
    args = parser.parse_args()
    # First, before any thread starts, as a long-lived agent-run process does.
    capped = False if args.glibc_arenas else limit_malloc_arenas()
    n = 40 if args.quick else args.conversations
    if n <= args.warmup + 1:
        parser.error(f"need more than {args.warmup + 1} conversations")
    if args.tracemalloc:
        tracemalloc.start(25)
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "memory.scenario.yaml"
        scenario.write_text(SCENARIO)
        for mode in MODES if args.mode == "all" else (args.mode,):
            result = asyncio.run(measure(mode, n, wav=args.wav, warmup=args.warmup, types=args.types,
                                         traced=args.tracemalloc, scenario=scenario, progress=args.progress))
            result["malloc_arenas_capped"] = capped
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                report(result)


if __name__ == "__main__":
    main()
