"""Emulator cost with the real Nova behaviour (NovaHandler: validation, VAD, scenario, pacing), per
event and per real-time session, next to the wire layer alone (bench_emulator_wire.py's handler).

The emulator runs in this process; the real SDK client (aws-sdk-bedrock-runtime over TLS/HTTP/2)
runs in a child process (this script with --client), so this process's CPU is the emulator's only.
A sampler records this process's CPU time against CLOCK_MONOTONIC (shared by all processes) every
10 ms; the child reports the window of each measurement and the CPU in that window is interpolated.
The sampler's own cost (measured while idle) is subtracted.

Phases (each repeated --reps times; median and spread reported):
  wire-in / wire-out  bench_emulator_wire's handler: read and json.loads each event / send N
                      1024 B audioOutput events. The cost of TLS + HTTP/2 + event-stream + SigV4.
  nova-in             a valid Nova 2 session (setup events, audio block) then --events audioInput
                      events of 1024 B silence, sent as fast as the stream takes them: validation
                      against the input schema and ordering rules, VAD, the brain.
  nova-out            interactive text turns answered from a scenario with a ~20 s `say`: USER and
                      ASSISTANT text, 100 ms audioOutput chunks (4800 B PCM at 24 kHz), usage,
                      contentStart/End. Unpaced (speed 1000) so the figure is CPU, not waiting.
                      Speech is synthesised once before (espeak-ng, cached as in normal use).
  real-time           --sessions concurrent sessions for --seconds: each streams 31.25 audioInput
                      events/s (32 ms of 16 kHz) of a recorded question then silence, on loop; the
                      emulator detects end of speech and answers with a ~3 s sentence at the
                      default speed (4x real time). Reports CPU %, events in/out, worst lags.

    .venv/bin/python bench/bench_emulator.py [--quick] [--reps 5] [--events 2000] [--sessions 8]
        [--seconds 8] [--asr none|whisper] [--json] [--compare CHECKOUT [--rounds 3]]

--compare runs the whole bench against another checkout's `runner` (A: e.g. a worktree of main)
and this one's (B), alternating A B A B..., each in its own process with PYTHONPATH set, and
prints the medians side by side with the ratio B/A: the before/after of a change, from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    CHUNK_BYTES,
    EVENTS_PER_SECOND,
    NOVA2,
    OUT_RATE,
    CpuSampler,
    audio_input,
    chunk,
    closing,
    open_sdk_stream,
    opening,
    sample_pcm,
    sdk_client,
    spread,
    text_block,
)

LONG_SAY = ("Here is a long answer, so that the emulator streams many audio chunks in one turn. " * 4).strip()
SHORT_SAY = "Your order one two three four five has shipped and arrives on Friday."
TURNS = 400


# -- server side (this process) -------------------------------------------------------------------


def make_router(asr: str = "none") -> Any:
    from bench_emulator_wire import BenchHandler

    from runner.emulator.api import EmulatorStream, Rejection, StreamRequest
    from runner.emulator.nova import NovaConfig, NovaHandler
    from runner.emulator.scenario import parse_scenario

    def scenario(text: str) -> Any:
        return parse_scenario({"turns": [{"user": "Talk.", "assistant": [{"say": text}]}] * TURNS})

    nova = {
        "in": NovaHandler(NovaConfig(scenario(SHORT_SAY), asr=asr)),
        "out": NovaHandler(NovaConfig(scenario(LONG_SAY), speed=1000.0, asr=asr)),
        "rt": NovaHandler(NovaConfig(scenario(SHORT_SAY), asr=asr)),
    }
    wire = BenchHandler()

    class Router:
        """Model id "in.amazon.nova-2-sonic-v1:0" → NovaHandler "in"; "sink", "burst:N" → wire bench."""

        def _pick(self, request: StreamRequest) -> Any:
            prefix, _, rest = request.model_id.partition(".")
            return nova[prefix] if rest else wire

        def admit(self, request: StreamRequest) -> Rejection | None:
            result: Rejection | None = self._pick(request).admit(request)
            return result

        async def handle(self, stream: EmulatorStream) -> None:
            await self._pick(stream.request).handle(stream)

    return Router()


async def run_child(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 150)
    if proc.returncode != 0:
        raise SystemExit(f"client failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(stdout)
    return result


async def server_main(args: argparse.Namespace) -> None:
    from runner.emulator import speech
    from runner.emulator.server import Emulator

    # Speech synthesis is cached per sentence (lru_cache in speech.py); fill the cache first so
    # the per-event figures do not include one espeak-ng run.
    for text in (LONG_SAY, SHORT_SAY):
        speech.synthesize(text, OUT_RATE)
    sampler = CpuSampler()
    figures: dict[str, Any] = {}
    async with asyncio.TaskGroup() as tg, Emulator(make_router(args.asr)) as emulator:
        sampler_task = tg.create_task(sampler.run())
        await asyncio.sleep(1.0)
        t_idle = time.monotonic()
        await asyncio.sleep(1.0)
        idle_rate = sampler.cpu(t_idle, time.monotonic())  # sampler + idle server, CPU s per s
        print(f"machine: {os.cpu_count()} cores; emulator idle (incl. 10 ms CPU sampler): "
              f"{idle_rate * 100:.2f} % of a core (subtracted below); speech recognition: {args.asr}")

        report = await run_child(emulator.env(), "events", json.dumps(vars(args)))

        def per_event(phase: str, count_key: str) -> list[float]:
            out = []
            for rep in report[phase]:
                t0, t1 = rep["window"]
                out.append((sampler.cpu(t0, t1) - idle_rate * (t1 - t0)) / rep[count_key])
            return out

        n = args.events
        wire_in = per_event("wire_in", "sent")
        nova_in = per_event("nova_in", "sent")
        wire_out = per_event("wire_out", "received")
        nova_out = per_event("nova_out", "received")
        audio_share = statistics.median(r["audio"] / r["received"] for r in report["nova_out"])
        print(f"\nper-event emulator CPU (median, spread over {args.reps} runs of {n} events):")
        print(f"  wire-in   audioInput 1024 B, wire layer only   : {spread(wire_in, 1e6, ' µs')}")
        print(f"  nova-in   audioInput 1024 B, NovaHandler       : {spread(nova_in, 1e6, ' µs')}")
        print(f"  wire-out  audioOutput 1024 B, wire layer only  : {spread(wire_out, 1e6, ' µs')}")
        print(f"  nova-out  output events, NovaHandler            : {spread(nova_out, 1e6, ' µs')}"
              f"  ({audio_share * 100:.0f} % audioOutput of 4800 B)")
        m_in, m_out = statistics.median(nova_in), statistics.median(nova_out)
        w_in, w_out = statistics.median(wire_in), statistics.median(wire_out)
        figures.update(wire_in_us=w_in * 1e6, nova_in_us=m_in * 1e6, wire_out_us=w_out * 1e6,
                       nova_out_us=m_out * 1e6)
        print(f"  NovaHandler / wire-only: input x{m_in / w_in:.2f}, output x{m_out / w_out:.2f}"
              f" (output events carry 4.7x the PCM of wire-out's)")

        # One real-time session: 31.25 input events/s always; while the assistant talks, about 10
        # audioOutput (100 ms chunks) + ~1 other event per second of its speech.
        listen = EVENTS_PER_SECOND * m_in
        talk = listen + 11 * m_out
        print("\ncomputed capacity of one emulator process (one core, it is one asyncio thread):")
        print(f"  listening session (31.25 in/s)           : {listen * 100:.2f} % of a core"
              f" → ~{int(1 / listen)} sessions")
        print(f"  assistant talking all the time (+11 out/s): {talk * 100:.2f} % of a core"
              f" → ~{int(1 / talk)} sessions")
        wire_echo = EVENTS_PER_SECOND * (w_in + w_out)
        print(f"  (wire-only echo session, 31.25 in + 31.25 out/s, as bench_emulator_wire.py:"
              f" {wire_echo * 100:.2f} % → ~{int(1 / wire_echo)} sessions)")

        print(f"\nverification: {args.sessions} concurrent real-time sessions for {args.seconds:g} s"
              f" (client in a separate process):")
        rt = await run_child(emulator.env(), "rt", json.dumps(vars(args)))
        t0, t1 = rt["window"]
        cpu = sampler.cpu(t0, t1) - idle_rate * (t1 - t0)
        per_session = cpu / (t1 - t0) / args.sessions
        print(f"  emulator CPU {cpu / (t1 - t0) * 100:.1f} % of a core over {t1 - t0:.1f} s"
              f" → {per_session * 100:.2f} % per session → ~{int(1 / per_session)} sessions per core"
              f" at this mix")
        print(f"  events in {rt['sent']} ({rt['sent'] / (t1 - t0):.0f}/s), out {rt['received']}"
              f" ({rt['audio']} audioOutput), answers {rt['answers']}, interruptions {rt['interrupted']}")
        print(f"  worst client send lag behind the 32 ms schedule: {rt['max_lag'] * 1000:.0f} ms;"
              f" worst emulator event-loop lag: {sampler.loop_lag(t0, t1) * 1000:.0f} ms;"
              f" client process CPU {rt['client_cpu'] * 100:.0f} % of a core")
        figures.update(rt_session_pct=per_session * 100, rt_events_in=rt["sent"],
                       rt_events_out=rt["received"], rt_answers=rt["answers"],
                       rt_loop_lag_ms=sampler.loop_lag(t0, t1) * 1000)
        sampler_task.cancel()
    if args.json:
        print(JSON_MARK + json.dumps(figures))


# -- client side (child process) ------------------------------------------------------------------


async def drain(stream: Any, counts: dict[str, int], turn_done: asyncio.Event | None = None) -> None:
    _, receiver = await stream.await_output()
    while (item := await receiver.receive()) is not None:
        counts["received"] += 1
        body = json.loads(item.value.bytes_)["event"]
        name = next(iter(body))
        if name == "audioOutput":
            counts["audio"] += 1
        elif name == "contentEnd":
            end = body[name]
            if end.get("stopReason") == "INTERRUPTED":
                counts["interrupted"] += 1
            if end.get("stopReason") == "END_TURN" and end.get("type") == "TEXT":
                counts["answers"] += 1
                if turn_done is not None:
                    turn_done.set()


def new_counts() -> dict[str, int]:
    return {"sent": 0, "received": 0, "audio": 0, "answers": 0, "interrupted": 0}


async def wire_phase(client: Any, model: str, count: int) -> dict[str, Any]:
    from bench_emulator_wire import audio_event

    counts = new_counts()
    body = json.dumps(audio_event("audioInput")).encode()
    t0 = time.monotonic()
    stream = await open_sdk_stream(client, model)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(drain(stream, counts))
        for _ in range(count):
            await stream.input_stream.send(chunk(body))
            counts["sent"] += 1
        await stream.input_stream.close()
    return {**counts, "window": (t0, time.monotonic())}


async def nova_in_phase(client: Any, count: int) -> dict[str, Any]:
    counts = new_counts()
    silence = audio_input(bytes(CHUNK_BYTES))
    t0 = time.monotonic()
    stream = await open_sdk_stream(client, f"in.{NOVA2}")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(drain(stream, counts))
        for payload in opening():
            await stream.input_stream.send(chunk(payload))
        for _ in range(count):
            await stream.input_stream.send(chunk(silence))
            counts["sent"] += 1
        for payload in closing():
            await stream.input_stream.send(chunk(payload))
        await stream.input_stream.close()
    return {**counts, "window": (t0, time.monotonic())}


async def nova_out_phase(client: Any, turns: int) -> dict[str, Any]:
    counts = new_counts()
    done = asyncio.Event()
    t0 = time.monotonic()
    stream = await open_sdk_stream(client, f"out.{NOVA2}")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(drain(stream, counts, done))
        for payload in opening():
            await stream.input_stream.send(chunk(payload))
        for turn in range(turns):
            done.clear()
            for payload in text_block(f"q{turn}", "USER", "Talk to me.", interactive=True):
                await stream.input_stream.send(chunk(payload))
            await asyncio.wait_for(done.wait(), 60)
        for payload in closing():
            await stream.input_stream.send(chunk(payload))
        await stream.input_stream.close()
    return {**counts, "window": (t0, time.monotonic())}


async def realtime_session(client: Any, seconds: float, pattern: list[bytes], offset: int,
                           counts: dict[str, int]) -> float:
    stream = await open_sdk_stream(client, f"rt.{NOVA2}")
    max_lag = 0.0
    async with asyncio.TaskGroup() as tg:
        tg.create_task(drain(stream, counts))
        for payload in opening():
            await stream.input_stream.send(chunk(payload))
        start = time.monotonic()
        for i in range(int(seconds * EVENTS_PER_SECOND)):
            lag = time.monotonic() - (start + i / EVENTS_PER_SECOND)
            max_lag = max(max_lag, lag)
            if lag < 0:
                await asyncio.sleep(-lag)
            await stream.input_stream.send(chunk(pattern[(offset + i) % len(pattern)]))
            counts["sent"] += 1
        for payload in closing():
            await stream.input_stream.send(chunk(payload))
        await stream.input_stream.close()
    return max_lag


async def bounded(phase: str, coro: Any, limit_s: float = 60.0) -> Any:
    try:
        async with asyncio.timeout(limit_s):
            return await coro
    except TimeoutError:
        print(f"client: phase {phase} did not finish within {limit_s:g} s", file=sys.stderr)
        raise


async def client_main(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    client = await sdk_client()
    if mode == "events":
        n, reps = options["events"], options["reps"]
        result: dict[str, Any] = {"wire_in": [], "nova_in": [], "wire_out": [], "nova_out": []}
        turns = max(2, n // 250)  # ~230 output events per turn
        for _ in range(reps):  # interleaved, so slow phases of the machine hit every kind alike
            result["wire_in"].append(await bounded("wire-in", wire_phase(client, "sink", n)))
            result["nova_in"].append(await bounded("nova-in", nova_in_phase(client, n)))
            result["wire_out"].append(await bounded("wire-out", wire_phase(client, f"burst:{n}", 1)))
            result["nova_out"].append(await bounded("nova-out", nova_out_phase(client, turns)))
    else:
        # A recorded question, then silence long enough for the answer (~3 s at 4x) to play out.
        pcm = sample_pcm() + bytes(int(4.5 * 32000))
        pattern = [audio_input(pcm[i:i + CHUNK_BYTES].ljust(CHUNK_BYTES, b"\0"))
                   for i in range(0, len(pcm), CHUNK_BYTES)]
        sessions, seconds = options["sessions"], options["seconds"]
        counts = new_counts()
        cpu0, t0 = time.process_time(), time.monotonic()
        async with asyncio.timeout(seconds + 60), asyncio.TaskGroup() as tg:
            # Staggered starting points in the pattern, as independent users would be.
            tasks = [tg.create_task(realtime_session(client, seconds, pattern,
                                                     k * len(pattern) // sessions, counts))
                     for k in range(sessions)]
        t1 = time.monotonic()
        result = {**counts, "window": (t0, t1), "max_lag": max(t.result() for t in tasks),
                  "client_cpu": (time.process_time() - cpu0) / (t1 - t0)}
    await client.close()
    return result


# -- A/B comparison of two checkouts ---------------------------------------------------------------

JSON_MARK = "FIGURES "
COMPARED = (("wire_in_us", "wire-in, µs per audioInput (wire layer only)"),
            ("nova_in_us", "nova-in, µs per audioInput (NovaHandler)"),
            ("wire_out_us", "wire-out, µs per audioOutput (wire layer only)"),
            ("nova_out_us", "nova-out, µs per output event (NovaHandler)"),
            ("rt_session_pct", "verification, % of a core per real-time session"))


def compare(args: argparse.Namespace, forwarded: list[str]) -> None:
    """Run this bench --rounds times against each checkout, alternating (A B A B ...) so that a
    slow phase of the machine hits both alike, and print the medians side by side with B/A."""
    trees = {"A": Path(args.compare).resolve(), "B": Path(__file__).resolve().parent.parent}
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        for label, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            proc = subprocess.run([sys.executable, __file__, *forwarded, "--json"], env=env,
                                  capture_output=True, text=True, timeout=600, check=False)
            line = next((x for x in proc.stdout.splitlines() if x.startswith(JSON_MARK)), None)
            if proc.returncode != 0 or line is None:
                raise SystemExit(f"round {round_ + 1}, {label} ({tree}) failed:\n{proc.stderr[-2000:]}")
            runs[label].append(json.loads(line.removeprefix(JSON_MARK)))
            print(f"round {round_ + 1}/{args.rounds} {label}: " + ", ".join(
                f"{key} {runs[label][-1][key]:.2f}" for key, _ in COMPARED), flush=True)
    print(f"\nA = {trees['A']}\nB = {trees['B']}\nmedian of {args.rounds} alternating rounds"
          " (min-max):")
    print(f"  {'figure':<50} {'A':>38} {'B':>38} {'B/A':>6}")
    for key, title in COMPARED:
        a, b = ([run[key] for run in runs[label]] for label in ("A", "B"))
        ratio = statistics.median(b) / statistics.median(a)
        print(f"  {title:<50} {spread(a, digits=2):>38} {spread(b, digits=2):>38} x{ratio:.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        print(json.dumps(asyncio.run(client_main(sys.argv[2], json.loads(sys.argv[3])))))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI: fewer events, reps, seconds")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--asr", default="none", choices=("none", "whisper"),
                        help="the emulator's speech recognition (default none, as `agent-run serve`'s "
                             "load tests run it; whisper transcribes each utterance of the verification)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--compare", metavar="CHECKOUT",
                        help="A/B: run this bench against CHECKOUT's runner (A) and this one's (B), "
                             "alternating, and print both with their ratio")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare: runs of each (default 3)")
    args = parser.parse_args()
    if args.compare:
        forwarded = ["--quick"] if args.quick else [
            "--reps", str(args.reps), "--events", str(args.events), "--sessions", str(args.sessions),
            "--seconds", str(args.seconds)]
        compare(args, [*forwarded, "--asr", args.asr])
        return
    if args.quick:
        args.reps, args.events, args.sessions, args.seconds = 2, 500, 4, 3.0
    asyncio.run(server_main(args))


if __name__ == "__main__":
    main()
