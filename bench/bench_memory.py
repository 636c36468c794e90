"""Memory: what one process retains per conversation, over N conversations one after another.

The default (--mode serve) is issue 10's case: one `agent-run serve agents/orders.yaml` worker
serving conversations one after another. Three processes: `agent-run emulate` (its Whisper and
espeak memory is its own; AGENT_RUN_EMULATOR_ASR=none as the tests set it), the worker (this
script re-run as `--worker serve ...`: the real `agent-run serve` plus a probe answering SIGUSR1),
and this one, the caller: a real WebSocket client of /ws that types the question (or with --wav
speaks samples/what_time_is_it.wav in 20 ms frames in real time), waits for the tool result,
"Done." and its audio, and hangs up (--twilio: a simulated Twilio Media Streams call on
/twilio/stream instead, tests/twilio's caller: the WAV as 8 kHz μ-law, the answer played out with
its marks answered, then `stop`); then waits until /ping says Healthy (the worker has ended the
conversation) and probes. The probe runs in the idle worker (a Python signal handler on its main thread):
gc.collect(), RSS (VmRSS; and after malloc_trim(0) with --trim), Python objects tracked by gc,
how many SDK clients, CRT HTTP clients, event-loop groups, bootstraps, TLS contexts and host
resolvers exist (one each for every conversation) and how many conversations, callers, transcripts
and streams (none after their end), its Python and OS threads (by name), open fds and tasks.

The other modes run the engine in this process (`run_agent`, agents/orders.yaml, barge-in policy,
tools, muted sink) through the real SDK over TLS, typed input (a `QueueTextInput` line) or --wav
(heard by the emulator's Whisper when installed):
  per-run   `RunOptions(emulate=True)`: a fresh in-process emulator AND SDK client per
            conversation, exactly as `agent-run AGENT --emulate` does (runner + emulator together).
  shared    one in-process emulator for all conversations; each conversation still builds its
            own SDK client (what `run_agent(emulate=False)` does).
  external  `agent-run emulate --quiet` in a child process: this process holds only the runner;
            the child's RSS is sampled too, so what the emulator retains is reported apart.
The scenario answers every line with a tool call (trackOrderTool) and "Done.".

Figures: "retained per conversation" is the least-squares slope of RSS after --warmup conversations
(allocator pools, caches and first-use imports settle in the first few), also over the second half
alone, and the Theil-Sen slope (the median of the slopes between every two conversations: a step
or a spike moves few of them, a leak moves them all; tests/serve_memory bounds it). RSS spikes
for a conversation and falls back, so the "floor" growth (lowest RSS of the last 5 against the
lowest of #2-#6) is what stays. --types prints the object types whose count grew most between
conversation max(warmup, N/10) and the last; --tracemalloc (serve: started in the idle worker)
prints the top traced growth between the same two, by traceback (tracemalloc slows the worker and
inflates RSS: compare RSS only between runs without it). --json prints one JSON object per mode
(used by tests/serve_memory). --leak-kb K makes the worker keep K kB per conversation on purpose,
to see a leak in the figures.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_memory.py [--quick] [-n 500]
        [--mode serve|per-run|shared|external|all] [--wav | --twilio] [--types] [--tracemalloc]
        [--trim] [--crt-memory] [--leak-kb K] [--glibc-arenas] [--progress] [--json]

Like a server, the bench caps glibc's malloc arenas first (runner.allocator; `agent-run serve`
does it itself); --glibc-arenas measures glibc's defaults instead (RSS then grows in steps while
threads take turns at large buffers: see runner/allocator.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
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
MODES = ("serve", "per-run", "shared", "external")
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


def robust_slope(ys: Sequence[float]) -> float:
    """Theil-Sen: the median of the slopes between every two points. RSS moves in steps (a buffer
    mapped for a conversation and unmapped a few later); a step or a spike moves few of the
    pairwise slopes, while a leak moves them all."""
    slopes = sorted((ys[j] - ys[i]) / (j - i) for i in range(len(ys)) for j in range(i + 1, len(ys)))
    return slopes[len(slopes) // 2] if slopes else 0.0


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
    summarize(result)
    if base_types is not None:
        grown = type_counts()
        grown.subtract(base_types)
        result["types_grown"] = [(k, v) for k, v in grown.most_common(15) if v > 0]
    if base_snapshot is not None:
        result["traced_growth"] = traced_growth(tracemalloc.take_snapshot(), base_snapshot)
    return result


def summarize(result: dict[str, Any]) -> None:
    """The per-conversation figures of `result["rows"]`, added to `result`."""
    rows, warmup = result["rows"], result["warmup"]
    after, second_half = rows[warmup:], rows[len(rows) // 2:]
    for key in ("rss_mb", "rss_trimmed_mb", "objects", "emulator_rss_mb", "traced_mb", "crt_native_kb",
                "pymalloc_arenas", "pymalloc_used_mb"):
        if after and key in after[0]:
            result[f"{key}_per_conversation"] = slope([r[key] for r in after])
            result[f"{key}_per_conversation_second_half"] = slope([r[key] for r in second_half])
            result[f"{key}_per_conversation_robust"] = robust_slope([r[key] for r in after])
    # RSS spikes for a conversation or two and falls back (freed memory the allocator returns):
    # what is retained raises the floor, so compare the lowest RSS of the last WINDOW conversations
    # with the lowest of the first WINDOW after #1 (which pays the first-use imports and loads).
    result["rss_floor_growth_mb"] = (min(r["rss_mb"] for r in rows[-WINDOW:])
                                     - min(r["rss_mb"] for r in rows[1:1 + WINDOW]))


# -- serve: one `agent-run serve` worker in a child process, callers on its /ws from here ------------

PROBE_DIR_ENV = "BENCH_MEMORY_PROBE_DIR"  # set for the worker: where it answers probes
# Objects counted by type name in the worker: one SDK client (and its CRT HTTP client, event-loop
# group, bootstrap, TLS context) for every conversation, and no conversation kept after its end.
WATCHED = ("AsyncBedrockRuntimeClient", "AWSCRTHTTPClient", "EventLoopGroup", "ClientBootstrap",
           "ClientTlsContext", "DefaultHostResolver", "Conversation", "BrowserCaller", "CallerTranscript",
           "BedrockStream")
PROBE_TIMEOUT_S = 30.0
# /ping turns Healthy when the last conversation gives back its slot, a moment before its caller's
# handler has returned (closing the socket): a probe waits, at most this long, until the worker
# holds none of these, so a row counts what is retained, not what is still being let go.
PER_CONVERSATION = ("Conversation", "BrowserCaller", "CallerTranscript", "BedrockStream")
SETTLE_S = 3.0
LEAKED: list[bytes] = []


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): give the free memory at the top of every arena back to the system."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """What this process (the worker) holds now: run on SIGUSR1 (main thread, worker idle).

    RSS is read first (after gc, and again after malloc_trim when asked), before counting objects
    allocates anything.
    """
    if kb := request.get("leak_kb"):  # --leak-kb: the leak a bound must catch
        LEAKED.append(bytes(range(256)) * (kb * 4))
    gc.collect()
    row: dict[str, Any] = {"seq": request["seq"], "rss_mb": rss_mb()}
    if request.get("trim"):
        malloc_trim()
        row["rss_trimmed_mb"] = rss_mb()
    watched = dict.fromkeys(WATCHED, 0)
    objects = gc.get_objects()
    row["objects"] = len(objects)
    for o in objects:
        for cls in type(o).__mro__:  # a subclass counts as its watched base (runner's LeanCRTHTTPClient)
            if (name := cls.__qualname__) in watched:
                watched[name] += 1
                break
    row["watched"] = watched
    if request.get("types"):
        row["types"] = dict(Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects))
    del objects
    row["threads"] = threading.active_count()
    row["os_threads"] = len(os.listdir("/proc/self/task"))
    row["thread_names"] = dict(Counter(thread_names()))
    row["fds"] = open_fds()
    with contextlib.suppress(RuntimeError):  # no loop running (yet)
        row["tasks"] = len(asyncio.all_tasks(asyncio.get_running_loop()))
    row.update(pymalloc())
    if os.environ.get("AWS_CRT_MEMORY_TRACING", "0") != "0":  # --crt-memory: what awscrt holds natively
        from awscrt._test import native_memory_usage

        row["crt_native_kb"] = native_memory_usage() / 1024
    if request.get("start_tracing"):  # from the idle worker on: tracing its imports takes minutes
        tracemalloc.start(6)
    if tracemalloc.is_tracing():
        row["traced_mb"] = tracemalloc.get_traced_memory()[0] / 1e6
        if request.get("snapshot"):
            tracemalloc.take_snapshot().dump(request["snapshot"])
    return row


def pymalloc() -> dict[str, float]:
    """Python's small-object allocator: its arenas (1 MiB each) and the bytes in used blocks.

    sys._debugmallocstats() writes to the C stderr, so fd 2 goes to a file for the call."""
    with tempfile.TemporaryFile("w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        stats = {line.split("=")[0].strip("# ").strip(): line.split("=")[1].strip().replace(",", "")
                 for line in out if line.startswith("# ") and "=" in line}
    return {"pymalloc_arenas": int(stats.get("arenas allocated current", 0)),
            "pymalloc_used_mb": int(stats.get("bytes in allocated blocks", 0)) / 2**20}


def thread_names() -> list[str]:
    """The OS threads of this process by name (Python's, awscrt's event loop "AwsEventLoop ...")."""
    names = []
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip().rstrip("0123456789 "))
    return names


def worker(argv: list[str]) -> int:
    """`agent-run ARGV` in this process, answering probes (SIGUSR1) in $BENCH_MEMORY_PROBE_DIR."""
    folder = Path(os.environ[PROBE_DIR_ENV])

    def on_probe(signum: int, frame: object) -> None:
        row = probe(json.loads((folder / "request.json").read_text()))
        (folder / "row.tmp").write_text(json.dumps(row))
        (folder / "row.tmp").replace(folder / "row.json")

    signal.signal(signal.SIGUSR1, on_probe)
    from runner.cli import main as runner_main

    return runner_main(argv)


class ServeWorker:
    """The worker process, as seen from the bench: its pid, URL and probes."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, folder: Path) -> None:
        self.proc, self.port, self.folder = proc, port, folder
        self._seq = 0

    async def probe(self, **request: Any) -> dict[str, Any]:
        self._seq += 1
        answer = self.folder / "row.json"
        answer.unlink(missing_ok=True)
        (self.folder / "request.json").write_text(json.dumps({"seq": self._seq, **request}))
        os.kill(self.proc.pid, signal.SIGUSR1)
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the worker exited {self.proc.returncode}")
                with contextlib.suppress(FileNotFoundError, ValueError):
                    row: dict[str, Any] = json.loads(answer.read_text())
                    if row["seq"] == self._seq:
                        return row
                await asyncio.sleep(0.02)

    async def settled(self) -> None:
        """Wait (at most SETTLE_S) until the worker holds no per-conversation object."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            watched = (await self.probe())["watched"]
            if not any(watched[name] for name in PER_CONVERSATION) or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)

    async def idle(self) -> None:
        """Wait until the worker has ended every conversation (/ping says Healthy)."""
        url = f"http://127.0.0.1:{self.port}/ping"
        async with asyncio.timeout(CONVERSATION_TIMEOUT_S):
            while json.loads(await asyncio.to_thread(http_get, url))["status"] != "Healthy":  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # (another process's state: polled)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@contextlib.contextmanager
def serve_worker(scenario: Path, tmp: Path, *, arenas: bool,
                 crt_memory: bool = False) -> Iterator[tuple[ServeWorker, int]]:
    """`agent-run emulate` and an `agent-run serve agents/orders.yaml` worker (this script, --worker)."""
    sys.path.insert(0, str(ROOT))
    from tests.e2e.e2e_helpers import base_env  # AGENT_RUN_EMULATOR_ASR=none, nothing AWS
    from tests.emulate_process import EmulateProcess, exported

    env = {k: v for k, v in base_env(PYTHONPATH=str(ROOT)).items() if not k.startswith("MALLOC_")}
    with EmulateProcess(["-q", "--scenario", scenario], tmp / "emulator.log", env) as emulator:
        emulator_env = exported(emulator.wait_ready())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        worker_env = {**env, **emulator_env, PROBE_DIR_ENV: str(tmp)}
        if crt_memory:  # awscrt counts its native allocations (read before awscrt is imported)
            worker_env["AWS_CRT_MEMORY_TRACING"] = "1"
        if not arenas:  # glibc's default (8 per core); `agent-run serve` leaves an operator's setting
            worker_env["MALLOC_ARENA_MAX"] = str(8 * (os.cpu_count() or 1))
        with (tmp / "serve.err").open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", "serve", str(AGENT),
                 "--port", str(port)], cwd=ROOT, env=worker_env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err)
            try:
                deadline = time.monotonic() + 60
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the worker exited:\n{(tmp / 'serve.err').read_text()}")
                    with contextlib.suppress(OSError):
                        http_get(f"http://127.0.0.1:{port}/readyz")
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("the worker did not get ready in 60 s")
                    time.sleep(0.1)
                yield ServeWorker(proc, port, tmp), emulator.proc.pid
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


async def ws_conversation(url: str, *, wav: bool) -> None:
    """One caller on /ws: asks (typed, or the WAV spoken in real time), hears the tool call and
    "Done." to the end of the answer, and hangs up."""
    from websockets.asyncio.client import connect

    async with asyncio.timeout(CONVERSATION_TIMEOUT_S), connect(url, open_timeout=10, close_timeout=5) as ws:
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise RuntimeError(f"expected ready, got {ready}")
        speaker: asyncio.Task[None] | None = None
        if wav:
            speaker = asyncio.create_task(speak(ws, ready["input_rate"]))
        else:
            await ws.send(json.dumps({"type": "text", "text": LINE}))
        tool = said = False
        audio = 0
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    audio += len(message)
                else:
                    event = json.loads(message)
                    kind = event.get("type")
                    if kind == "error":
                        raise RuntimeError(f"the worker said: {event}")
                    tool |= kind == "tool_result" and event.get("ok") is True
                    said |= kind == "transcript" and event.get("role") == "assistant" and (
                        "Done" in event["text"])
                if tool and said and audio:
                    return
            raise RuntimeError("the worker closed the conversation early")
        finally:
            if speaker is not None:
                speaker.cancel()


async def twilio_call(url: str) -> None:
    """One simulated Twilio Media Streams call (tests/twilio/twilio_caller.py): the WAV as 8 kHz
    μ-law in real time, the answer's media frames played out (marks answered), then `stop`."""
    from tests.twilio.twilio_caller import TwilioCaller, wav_as_ulaw

    async with asyncio.timeout(CONVERSATION_TIMEOUT_S), TwilioCaller(url) as call:
        speaker = asyncio.create_task(call.speak(wav_as_ulaw(WAV), then_silence_s=CONVERSATION_TIMEOUT_S))
        try:
            answered = await call.wait_for(
                lambda heard: heard.media_frames >= 10 and heard.played_frames >= heard.media_frames,
                CONVERSATION_TIMEOUT_S)
            if not answered or call.heard.bad:
                raise RuntimeError(f"the phone call went wrong: {call.heard}")
        finally:
            speaker.cancel()
        await call.hang_up()


async def speak(ws: Any, rate: int) -> None:
    """The WAV in 20 ms frames in real time, then silence (a microphone never stops)."""
    import wave

    with wave.open(str(WAV)) as w:
        pcm = w.readframes(w.getnframes())
    frame = int(rate * 0.02) * 2
    start = time.monotonic()
    for n in itertools.count():
        await ws.send(pcm[n * frame:(n + 1) * frame].ljust(frame, b"\0"))
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))


async def measure_serve(n: int, *, wav: bool, warmup: int, types: bool, traced: bool, trim: bool,
                        arenas: bool, scenario: Path, progress: bool, leak_kb: int = 0,
                        crt_memory: bool = False, twilio: bool = False) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    base_at = max(warmup, n // 10) - 1  # type counts and tracemalloc: from here to the end
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_memory.") as tmp_name, \
            serve_worker(scenario, Path(tmp_name), arenas=arenas, crt_memory=crt_memory) as (server, emu):
        emulator_pid, tmp = emu, Path(tmp_name)
        url = f"ws://127.0.0.1:{server.port}/ws"
        first = await server.probe(trim=trim, start_tracing=traced)
        base_types: dict[str, int] | None = None
        for i in range(n):
            t0 = time.monotonic()
            if twilio:
                await twilio_call(f"ws://127.0.0.1:{server.port}/twilio/stream")
            else:
                await ws_conversation(url, wav=wav)
            await server.idle()
            seconds = time.monotonic() - t0
            await server.settled()
            at_base, at_end = i == base_at, i == n - 1
            snapshot = str(tmp / f"snapshot{i}") if traced and (at_base or at_end) else None
            row = await server.probe(types=types and (at_base or at_end), trim=trim, snapshot=snapshot,
                                     leak_kb=leak_kb)
            row.update(i=i, seconds=seconds, emulator_rss_mb=rss_mb(emulator_pid))
            if at_base:
                base_types = row.pop("types", None)
            grown_types = row.pop("types", None)
            rows.append(row)
            if progress:
                print(f"  serve #{i}: {seconds:.2f} s, RSS {row['rss_mb']:.1f} MB"
                      + (f" ({row['rss_trimmed_mb']:.1f} trimmed)" if trim else "")
                      + (f", awscrt {row['crt_native_kb']:.0f} kB" if "crt_native_kb" in row else "")
                      + f", pymalloc {row['pymalloc_arenas']} arenas {row['pymalloc_used_mb']:.2f} MB used"
                      + f", {row['objects']} objects, {row['os_threads']} threads",
                      file=sys.stderr, flush=True)
        kind = "Twilio call" if twilio else "wav" if wav else "text"
        result: dict[str, Any] = {"mode": "serve", "input": kind, "conversations": n,
                                  "warmup": warmup, "wall_s": time.monotonic() - started, "rows": rows,
                                  "idle": first, "base_at": base_at}
        if base_types is not None and grown_types is not None:
            grown = Counter(grown_types)
            grown.subtract(base_types)
            result["types_grown"] = [(k, v) for k, v in grown.most_common(15) if v > 0]
        if traced:
            end = tracemalloc.Snapshot.load(str(tmp / f"snapshot{n - 1}"))
            base = tracemalloc.Snapshot.load(str(tmp / f"snapshot{base_at}"))
            result["traced_growth"] = traced_growth(end, base)
    summarize(result)
    return result


def traced_growth(end: tracemalloc.Snapshot, base: tracemalloc.Snapshot) -> list[dict[str, Any]]:
    return [{"kb": s.size_diff / 1e3, "count": s.count_diff,
             "where": [f"{f.filename.removeprefix(str(ROOT) + '/')}:{f.lineno}" for f in s.traceback][-6:]}
            for s in end.compare_to(base, "traceback")[:12]]


def report(result: dict[str, Any]) -> None:
    rows = result["rows"]
    w = result["warmup"]
    seconds = sorted(r["seconds"] for r in rows)
    arenas = "malloc arenas capped" if result["malloc_arenas_capped"] else "glibc's default malloc arenas"
    print(f"\n{result['mode']} ({result['input']} input, {arenas}): {result['conversations']} "
          f"conversations in {result['wall_s']:.0f} s (median {seconds[len(seconds) // 2]:.2f} s each)")
    print(f"  RSS after #1 {rows[0]['rss_mb']:.1f} MB, after warm-up #{w} {rows[w - 1]['rss_mb']:.1f} MB, "
          f"after #{len(rows)} {rows[-1]['rss_mb']:.1f} MB")
    if "idle" in result:
        print(f"  worker idle before #1: RSS {result['idle']['rss_mb']:.1f} MB, "
              f"{result['idle']['os_threads']} OS threads")
    print(f"  RSS floor (lowest of 5) from #2-#6 to the last 5: {result['rss_floor_growth_mb']:+.1f} MB")
    print(f"  retained per conversation after warm-up: RSS {result['rss_mb_per_conversation'] * 1e3:.1f} kB, "
          f"gc objects {result['objects_per_conversation']:.1f}")
    half = len(rows) // 2
    print(f"  Theil-Sen slope after warm-up: RSS {result['rss_mb_per_conversation_robust'] * 1e3:.1f} kB")
    print(f"  second half (#{half + 1}-#{len(rows)}): RSS "
          f"{result['rss_mb_per_conversation_second_half'] * 1e3:.1f} kB, gc objects "
          f"{result['objects_per_conversation_second_half']:.2f} per conversation")
    if "rss_trimmed_mb_per_conversation" in result:
        print(f"  after malloc_trim: RSS {rows[w - 1]['rss_trimmed_mb']:.1f} -> "
              f"{rows[-1]['rss_trimmed_mb']:.1f} MB, "
              f"{result['rss_trimmed_mb_per_conversation'] * 1e3:.1f} kB per conversation after warm-up, "
              f"{result['rss_trimmed_mb_per_conversation_second_half'] * 1e3:.1f} kB over the second half")
    if "watched" in rows[-1]:
        first, last = rows[0]["watched"], rows[-1]["watched"]
        print("  objects after #1 -> #{}: {}".format(
            len(rows), ", ".join(f"{k} {first[k]}->{last[k]}" for k in last if first[k] or last[k])))
    if "emulator_rss_mb_per_conversation" in result:
        print(f"  emulator process: {rows[0]['emulator_rss_mb']:.1f} -> "
              f"{rows[-1]['emulator_rss_mb']:.1f} MB, "
              f"{result['emulator_rss_mb_per_conversation'] * 1e3:.1f} kB per conversation")
    if "pymalloc_arenas" in rows[-1]:
        print(f"  pymalloc: arenas {rows[0]['pymalloc_arenas']} -> {rows[-1]['pymalloc_arenas']}"
              f", used blocks {rows[0]['pymalloc_used_mb']:.2f} -> {rows[-1]['pymalloc_used_mb']:.2f} MB "
              f"({result['pymalloc_used_mb_per_conversation'] * 1e3:.2f} kB per conversation)")
    if "crt_native_kb_per_conversation" in result:
        print(f"  awscrt native: {rows[0]['crt_native_kb']:.0f} -> {rows[-1]['crt_native_kb']:.0f} kB, "
              f"{result['crt_native_kb_per_conversation']:.2f} kB per conversation")
    if "traced_mb_per_conversation" in result:
        print(f"  tracemalloc traced: {result['traced_mb_per_conversation'] * 1e3:.1f} kB per conversation")
    if "types_grown" in result or "traced_growth" in result:
        print(f"  growth from #{result.get('base_at', w - 1) + 1} to #{len(rows)}:")
    print(f"  threads {rows[w - 1]['threads']} -> {rows[-1]['threads']} "
          f"(OS threads {rows[w - 1]['os_threads']} -> {rows[-1]['os_threads']}), "
          f"fds {rows[w - 1]['fds']} -> {rows[-1]['fds']}, tasks {rows[-1].get('tasks')}")
    if "thread_names" in rows[-1]:
        print(f"  OS threads by name after #1: {rows[0]['thread_names']}, after #{len(rows)}: "
              f"{rows[-1]['thread_names']}; between {min(r['os_threads'] for r in rows)} and "
              f"{max(r['os_threads'] for r in rows)} over the run")
    for name, count in result.get("types_grown", []):
        print(f"    +{count:5d} {name}")
    for stat in result.get("traced_growth", []):
        print(f"    {stat['kb']:+8.1f} kB {stat['count']:+6d}  " + " <- ".join(reversed(stat["where"])))


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:  # the serve mode's worker process (serve_worker)
        sys.exit(worker(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--conversations", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="40 conversations")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--mode", choices=(*MODES, "all"), default="serve")
    parser.add_argument("--leak-kb", type=int, default=0, metavar="KB",
                        help="serve mode: the worker keeps KB more after each conversation (a leak on "
                             "purpose, to see that the figures and tests/serve_memory catch one)")
    parser.add_argument("--crt-memory", action="store_true",
                        help="serve mode: the worker's awscrt counts its native allocations "
                             "(AWS_CRT_MEMORY_TRACING=1), reported per conversation")
    parser.add_argument("--twilio", action="store_true",
                        help="serve mode: phone calls on /twilio/stream (Media Streams, the WAV as 8 kHz "
                             "μ-law) instead of browser callers on /ws")
    parser.add_argument("--trim", action="store_true",
                        help="serve mode: also RSS after malloc_trim(0) in the worker at each probe")
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
    if args.tracemalloc and args.mode != "serve":  # (serve: in the worker only)
        tracemalloc.start(25)
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "memory.scenario.yaml"
        scenario.write_text(SCENARIO)
        for mode in MODES if args.mode == "all" else (args.mode,):
            if mode == "serve":
                result = asyncio.run(measure_serve(
                    n, wav=args.wav, warmup=args.warmup, types=args.types, traced=args.tracemalloc,
                    trim=args.trim, arenas=not args.glibc_arenas, scenario=scenario, progress=args.progress,
                    leak_kb=args.leak_kb, crt_memory=args.crt_memory, twilio=args.twilio))
            else:
                result = asyncio.run(measure(mode, n, wav=args.wav, warmup=args.warmup, types=args.types,
                                             traced=args.tracemalloc, scenario=scenario,
                                             progress=args.progress))
            result["malloc_arenas_capped"] = capped
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                report(result)


if __name__ == "__main__":
    main()
