"""Conversations per `agent-run serve` worker, in real time, against the emulator (issue 10).

Three kinds of process, none sharing a loop with another:
  emulator  `agent-run emulate -q --asr none` with a bench scenario (every question gets the same
            two-sentence answer, no tool: any gap inside an answer is the server's), its exports
            handed to the worker exactly as a user would (`--env-file`);
  worker    `agent-run serve agents/orders.yaml` (no --emulate: it reaches the external emulator
            through AWS_ENDPOINT_URL_BEDROCK_RUNTIME / SSL_CERT_FILE, like a real deployment);
  callers   this script re-run as `--caller-process`, at most --per-process callers each. A caller
            is a real `websockets` client of /ws that streams samples/where_is_my_order.wav in
            20 ms frames in real time, then silence (a microphone never stops) until the answer
            has played, and asks again, for the whole step: one live conversation per caller.

For each N of the ramp the callers connect spread over the first second, run --warmup-s, and are
then measured for --step-s:
  worker CPU    utime+stime of the worker (all threads, /proc/PID/stat) over the window, as % of
                one core, and that divided by N;
  worker RSS    VmRSS at the end of the window; per conversation = (RSS - idle RSS) / N;
  loop lag      p99 and mean of the worker's own agent_run_event_loop_lag_seconds histogram over
                the window (a wake-up due every 50 ms; p99 is the upper bound of its bucket);
  eos → audio   caller side: the last loud 20 ms frame of the question sent → the first binary
                (assistant audio) frame received; p50 / p99 over every answer in the window;
  gaps          caller side: a frame of an answer arriving more than --jitter-ms after the audio
                before it would have finished playing (a player with that much buffer would click);
  send lag      caller side p99 of how late a 20 ms frame went out (the callers' own overload);
  loop thread   the worker's main thread alone (/proc/PID/schedstat): its CPU, and the share of the
                window it was ready to run but waiting for a core. A loop near 100 % CPU is saturated;
                a loop that waits for a core is starved by other processes (the machine is full);
  machine idle  idle CPU of the whole machine (/proc/stat) in the window, in cores;
  emulator/callers CPU   the other processes' CPU in the same window, for the whole picture.
The last line names the largest N whose loop lag p99 stayed under --lag-limit-ms with every
caller served and no gap. On a shared 2-core machine, the worker, the emulator and the callers
compete for the same two cores: the figures are a floor for a dedicated worker core.

    .venv/bin/python bench/bench_serve.py [--quick] [--ramp 1,5,10,20,30] [--step-s 10] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WAV = ROOT / "samples" / "where_is_my_order.wav"
AGENT = ROOT / "agents" / "orders.yaml"
FRAME_S = 0.02
LOUD_RMS = 500.0  # 16-bit RMS of a frame counted as speech (about -36 dBFS)
SCENARIO = """\
description: bench_serve - every question gets the same answer, no tool
fallback:
  - say: "Your order shipped yesterday. It should arrive on Thursday before noon."
"""
LAG = "agent_run_event_loop_lag_seconds"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc ----------------------------------------------------------------------------------------

def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def loop_thread(pid: int) -> tuple[float, float]:
    """(CPU s, s spent waiting for a CPU) of the process's main thread: the worker's event loop."""
    cpu_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(cpu_ns) / 1e9, int(wait_ns) / 1e9


def machine_idle_s() -> float:
    """Idle + iowait CPU seconds of the whole machine (all cores) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


# -- one caller process -----------------------------------------------------------------------------

def question() -> tuple[list[bytes], int]:
    """The WAV as 20 ms frames, and the index of its last loud frame."""
    import numpy as np

    with wave.open(str(WAV)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), WAV
        pcm = w.readframes(w.getnframes())
    size = int(16000 * FRAME_S) * 2
    frames = [pcm[i:i + size].ljust(size, b"\0") for i in range(0, len(pcm), size)]
    loud = [i for i, f in enumerate(frames)
            if float(np.sqrt(np.mean(np.frombuffer(f, "<i2").astype(np.float64) ** 2))) > LOUD_RMS]
    return frames, loud[-1]


@dataclass
class CallerLog:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (end of speech, latency)
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (at, gap beyond the buffer)
    send_lags: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def one_caller(url: str, start: float, stop: float, jitter_s: float, log: CallerLog) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    frames, last_loud = question()
    silence = bytes(len(frames[0]))
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    eos: float | None = None
    last_audio = 0.0
    played_until = 0.0  # when the caller's player would finish what it has received

    async def receive(ws: Any) -> None:
        nonlocal eos, last_audio, played_until
        async for message in ws:
            now = time.monotonic()
            if isinstance(message, bytes):
                duration = len(message) / 2 / rate_out
                if eos is not None:  # the first audio of an answer
                    log.latencies.append((eos, now - eos))
                    eos = None
                elif now > played_until + jitter_s:
                    log.gaps.append((now, now - played_until))
                played_until = max(played_until, now) + duration
                last_audio = now
            else:
                data = json.loads(message)
                if data.get("type") == "error":
                    log.errors.append(str(data.get("message")))

    try:
        async with connect(url, open_timeout=20, close_timeout=2, max_size=None) as ws:
            ready = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if ready.get("type") != "ready" or ready.get("input_rate") != 16000:
                log.errors.append(f"unexpected first message {ready}")
                return
            rate_out = int(ready["output_rate"])
            receiver = asyncio.create_task(receive(ws))
            tick = time.monotonic()
            try:
                while time.monotonic() < stop and not receiver.done():
                    for n, frame in enumerate(frames):  # the question, in real time
                        await ws.send(frame)
                        log.send_lags.append(max(0.0, time.monotonic() - tick))
                        if n == last_loud:
                            eos, asked = time.monotonic(), time.monotonic()
                        tick += FRAME_S
                        await asyncio.sleep(max(0.0, tick - time.monotonic()))
                    # Silence until the answer has played (0.6 s after its last audio), at most 15 s.
                    while time.monotonic() < stop and not receiver.done():
                        now = time.monotonic()
                        if eos is None and now > max(last_audio, played_until) + 0.6:
                            break
                        if now - asked > 15:
                            log.errors.append("no answer within 15 s")
                            break
                        await ws.send(silence)
                        log.send_lags.append(max(0.0, now - tick))
                        tick += FRAME_S
                        await asyncio.sleep(max(0.0, tick - time.monotonic()))
            finally:
                receiver.cancel()
    except ConnectionClosed as closed:
        log.errors.append(f"closed {closed.rcvd.code if closed.rcvd else '?'} "
                          f"{closed.rcvd.reason if closed.rcvd else ''}")
    except (OSError, TimeoutError) as exc:
        log.errors.append(f"{type(exc).__name__}: {exc}")


async def caller_process(url: str, n: int, start: float, stop: float, jitter_s: float) -> dict[str, Any]:
    logs = [CallerLog() for _ in range(n)]
    async with asyncio.TaskGroup() as tg:
        for i, log in enumerate(logs):
            tg.create_task(one_caller(url, start + i / max(n, 1), stop, jitter_s, log))
    return {"latencies": [x for log in logs for x in log.latencies],
            "gaps": [x for log in logs for x in log.gaps],
            "send_lags": [x for log in logs for x in log.send_lags],
            "errors": [x for log in logs for x in log.errors],
            "cpu_s": time.process_time()}


# -- the worker's /metrics ----------------------------------------------------------------------------

def lag_histogram(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{LAG}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith((f"{LAG}_count ", f"{LAG}_sum ", "agent_run_live_conversations ")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def lag_figures(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, int]:
    """(p99 upper bound, mean, count) of the loop lag observed between two scrapes (seconds)."""
    count = int(after[f"{LAG}_count"] - before[f"{LAG}_count"])
    if count == 0:
        return math.nan, math.nan, 0
    mean = (after[f"{LAG}_sum"] - before[f"{LAG}_sum"]) / count
    bounds = sorted((float(le), after[le] - before.get(le, 0.0)) for le in after
                    if le[0].isdigit() or le == "+Inf")
    for bound, cumulative in bounds:
        if cumulative >= 0.99 * count:
            return bound, mean, count
    return math.inf, mean, count


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))] if v else math.nan


# -- the ramp ----------------------------------------------------------------------------------------------

@dataclass
class Step:
    n: int
    live: float
    worker_cpu: float  # % of one core
    loop_cpu: float  # the event loop thread's CPU, % of one core
    loop_wait: float  # % of the window the loop thread was runnable but waiting for a CPU
    machine_idle: float  # idle CPU of the whole machine, in cores
    rss: float
    rss_per_conv: float
    lag_p99: float
    lag_mean: float
    lat: list[float]
    gaps: int
    send_lag_p99: float
    emulator_cpu: float
    callers_cpu: float
    errors: list[str]


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_serve: {what} not within {timeout_s} s")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def idle(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/ping", timeout=2) as response:
            return bool(json.loads(response.read())["status"] == "Healthy")
    except OSError:
        return False


def run_step(args: argparse.Namespace, n: int, base: str, worker: int, emulator: int,
             idle_rss: float) -> Step:
    url = base.replace("http://", "ws://") + "/ws"
    start = time.monotonic() + 1.0  # the caller processes start up meanwhile
    t0 = start + args.warmup_s
    t1 = t0 + args.step_s
    groups = [min(args.per_process, n - i) for i in range(0, n, args.per_process)]
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--caller-process", url, str(size), repr(start + i * 1.0 / len(groups)),
         repr(t1 + 0.3), repr(args.jitter_ms / 1000)], stdout=subprocess.PIPE, cwd=ROOT)
        for i, size in enumerate(groups)]
    time.sleep(max(0.0, t0 - time.monotonic()))
    m0, w0, e0 = lag_histogram(base), cpu_s(worker), cpu_s(emulator)
    (l0, q0), i0 = loop_thread(worker), machine_idle_s()
    rss_peak = rss_mb(worker)
    while time.monotonic() < t1:
        time.sleep(min(0.5, max(0.0, t1 - time.monotonic())))
        rss_peak = max(rss_peak, rss_mb(worker))
    m1, w1, e1 = lag_histogram(base), cpu_s(worker), cpu_s(emulator)
    (l1, q1), i1 = loop_thread(worker), machine_idle_s()
    results: list[dict[str, Any]] = []
    failed = {"latencies": [], "gaps": [], "send_lags": [], "errors": ["caller process failed"],
              "cpu_s": math.nan}
    for proc in procs:
        out, _ = proc.communicate(timeout=args.step_s + args.warmup_s + 30)
        results.append(json.loads(out.decode().strip().splitlines()[-1]) if proc.returncode == 0 else failed)
    wait_for(lambda: idle(base), 20, "the worker going idle after the step")
    window = t1 - t0
    lag_p99, lag_mean, _ = lag_figures(m0, m1)
    lat = [lat for r in results for at, lat in r["latencies"] if t0 <= at <= t1]
    gaps = sum(1 for r in results for at, _ in r["gaps"] if t0 <= at <= t1)
    # The callers' CPU over their whole life, scaled to the window (an estimate: they start up first).
    callers = sum(r["cpu_s"] for r in results) / (t1 + 0.3 - start + 1.0) * 100
    return Step(n, m1.get("agent_run_live_conversations", math.nan), (w1 - w0) / window * 100,
                (l1 - l0) / window * 100, (q1 - q0) / window * 100, (i1 - i0) / window, rss_peak,
                (rss_peak - idle_rss) / n, lag_p99, lag_mean, lat, gaps,
                pct([x for r in results for x in r["send_lags"]], 0.99), (e1 - e0) / window * 100, callers,
                [e for r in results for e in r["errors"]])


def ms(x: float) -> str:
    return "n/a" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x * 1000:.0f}")


def print_table(steps: list[Step], args: argparse.Namespace) -> None:
    head = ("N", "live", "worker CPU %", "CPU/conv %", "loop thread CPU %", "loop waits for CPU %",
            "machine idle (cores)", "RSS MB", "RSS/conv MB", "lag p99 ms", "lag mean ms",
            "eos→audio p50 ms", "p99 ms", "answers", "gaps", "send lag p99 ms", "emulator CPU %",
            "callers CPU %", "errors")
    rows = [head]
    for s in steps:
        rows.append((str(s.n), f"{s.live:.0f}", f"{s.worker_cpu:.1f}", f"{s.worker_cpu / s.n:.2f}",
                     f"{s.loop_cpu:.0f}", f"{s.loop_wait:.0f}", f"{s.machine_idle:.2f}", f"{s.rss:.0f}",
                     f"{s.rss_per_conv:.2f}", f"≤{ms(s.lag_p99)}", f"{s.lag_mean * 1000:.1f}",
                     ms(statistics.median(s.lat)) if s.lat else "n/a", ms(pct(s.lat, 0.99)), str(len(s.lat)),
                     str(s.gaps), ms(s.send_lag_p99), f"{s.emulator_cpu:.1f}", f"{s.callers_cpu:.1f}",
                     str(len(s.errors))))
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(head))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")
    for s in steps:
        for error in sorted(set(s.errors))[:3]:
            print(f"  N={s.n}: {s.errors.count(error)} x {error}")
    held = [s.n for s in steps if s.lag_p99 <= args.lag_limit_ms / 1000 and not s.errors and s.gaps == 0
            and s.live == s.n]
    best = max(held, default=0)
    print(f"largest N held (loop lag p99 ≤ {args.lag_limit_ms:g} ms, every caller live, no gap, no error): "
          f"{best}" + ("" if best else " (none)"))
    print(f"machine: {os.cpu_count()} cores shared by the worker, the emulator and the callers; "
          f"load average before the ramp {args.load:.2f}"
          + ("; --pin: the worker alone on one core, emulator and callers on the other" if args.pin else ""))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--caller-process":
        url, n, start, stop, jitter = sys.argv[2], int(sys.argv[3]), *map(float, sys.argv[4:7])
        print(json.dumps(asyncio.run(caller_process(url, n, start, stop, jitter))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ramp", default="1,5,10,20,30",
                   help="numbers of concurrent callers, one step each (default 1,5,10,20,30)")
    p.add_argument("--step-s", type=float, default=10.0, help="measured seconds per step (default 10)")
    p.add_argument("--warmup-s", type=float, default=4.0,
                   help="seconds after the callers start, not measured (default 4)")
    p.add_argument("--per-process", type=int, default=10, help="callers per caller process (default 10)")
    p.add_argument("--lag-limit-ms", type=float, default=20.0, help="loop lag p99 limit (default 20)")
    p.add_argument("--jitter-ms", type=float, default=60.0,
                   help="the caller's playback buffer: later audio counts as a gap (default 60)")
    p.add_argument("--pin", action="store_true",
                   help="run the worker on core 0 and everything else of the bench (emulator, callers) on "
                        "core 1, so the worker does not compete with its own load (other programs still may)")
    p.add_argument("--quick", action="store_true", help="ramp 1,5,10 with 6 s steps (under 60 s)")
    args = p.parse_args()
    if args.quick:
        args.ramp, args.step_s, args.warmup_s = "1,5,10", 6.0, 3.0
    ramp = [int(x) for x in args.ramp.split(",")]
    args.load = os.getloadavg()[0]
    cores = sorted(os.sched_getaffinity(0))
    if args.pin and len(cores) < 2:
        raise SystemExit("bench_serve: --pin needs two cores")
    worker_cores = {cores[0]} if args.pin else set(cores)
    if args.pin:
        os.sched_setaffinity(0, set(cores[1:]))  # the emulator and the callers inherit it
    sys.path.insert(0, str(ROOT))
    from tests.e2e.e2e_helpers import base_env
    from tests.emulate_process import EmulateProcess, exported

    with tempfile.TemporaryDirectory(prefix="bench_serve.") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "scenario.yaml").write_text(SCENARIO)
        env = base_env()
        emulate_args: list[str | Path] = ["-q", "--asr", "none", "--scenario", tmp / "scenario.yaml"]
        with EmulateProcess(emulate_args, tmp / "emulator.log", env) as emu:
            emu_env = exported(emu.wait_ready())
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            base = f"http://127.0.0.1:{port}"
            with (tmp / "serve.err").open("w") as err:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "runner", "serve", str(AGENT), "--port", str(port),
                     "--max-conversations", str(max(ramp) + 10)],
                    cwd=ROOT, env={**env, **emu_env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=err, preexec_fn=lambda: os.sched_setaffinity(0, worker_cores))
                try:
                    wait_for(lambda: worker.poll() is not None or http_ok(base + "/readyz"), 30, "the worker")
                    if worker.poll() is not None:
                        raise SystemExit(f"bench_serve: worker exited:\n{(tmp / 'serve.err').read_text()}")
                    time.sleep(1.0)
                    idle_rss = rss_mb(worker.pid)
                    print(f"# worker pid {worker.pid} (idle RSS {idle_rss:.0f} MB), "
                          f"emulator pid {emu.proc.pid}; "
                          f"ramp {ramp}, {args.warmup_s:g} s warm-up + {args.step_s:g} s measured per step",
                          flush=True)
                    steps = []
                    for n in ramp:
                        steps.append(run_step(args, n, base, worker.pid, emu.proc.pid, idle_rss))
                        s = steps[-1]
                        print(f"# N={n}: worker {s.worker_cpu:.0f} % CPU, lag p99 ≤{ms(s.lag_p99)} ms, "
                              f"{len(s.lat)} answers, {len(s.errors)} errors", flush=True)
                finally:
                    worker.terminate()
                    worker.wait(timeout=40)
    print_table(steps, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
