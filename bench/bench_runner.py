"""The runner against the emulator, side by side with a baseline written like AWS's sample scripts.

Both clients run in this process, one after the other, each against its own fresh emulator in a
separate process (`agent-run emulate --quiet`), through the real aws-sdk-bedrock-runtime client
over TLS. The microphone is a WAV file paced in real time: cycles of a question
(samples/what_time_is_it.wav), 1.5 s of silence, an interruption (samples/thanks_bye.wav) that
arrives while the first answer still plays, then 3.5 s of silence. The emulator's scenario answers
the question with a ~6 s sentence (streamed at 4x real time, as Nova does, so most of it is still
queued when the user interrupts) and the interruption with a tool call and a short sentence. Every
other cycle the tool is async (runner: awaited on the loop) instead of sync (runner: in a thread).

Runner  = the real Conversation (Session, barge-in policy, PlaybackQueue-based NullSink with 20 ms
          blocks, invoke_tool, BedrockStream transport), 32 ms (1024 B) mic chunks.
Baseline = bench/_baseline.py: one asyncio.Queue, 1024-frame blocking writes into a modelled
          PortAudio buffer of 2 x 1024 frames, queue cleared on barge-in, tools called inline.
Baseline at 32 ms = the same with 512-frame mic chunks: as many audioInput events as the runner, to
          show what the event rate alone costs (skip it with --no-same-rate; --quick skips it).

Figures (see bench/README.md for exactly what each measures):
  a. CPU of this process (all threads: asyncio loop, SDK/awscrt, audio) per second of conversation.
  b. audioOutput decoded -> its first sample starts playing, for chunks that arrive at an idle sink.
  c. first interruption signal decoded -> silence at the sink (end of the last audio still played).
  d. toolUse decoded -> handler starts; handler returns -> toolResult handed to the transport;
     plus a micro-benchmark of invoke_tool (sync in a thread, async) against a direct call.

    .venv/bin/python bench/bench_runner.py [--quick] [--reps 2] [--cycles 2] [--no-same-rate]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from _baseline import BlockingDevice, SampleStyleClient
from _common import ROOT, dist, sample_pcm, sdk_client, spread

from runner.audio.base import AudioFormat
from runner.audio.null import NullSink
from runner.audio.wav import WavSource
from runner.config.loader import load_agent
from runner.config.setup import session_setup
from runner.console import Console
from runner.conversation import Conversation, ConversationOptions
from runner.policies import POLICIES, FlushPlayback
from runner.protocol.events import AudioOutput, OutputEvent, ToolUse
from runner.protocol.session import Session
from runner.tools.invoke import invoke_tool
from runner.transcript import Transcript

OUT_RATE = 24_000
LONG_ANSWER = ("Let me tell you everything about the time. It is a quarter past three in the afternoon, "
               "on a sunny Tuesday, and the clocks in every time zone agree with me, more or less.")
SILENCE_1 = 1.5
SILENCE_2 = 3.5


def scenario_yaml(turns: int) -> str:
    lines = ["turns:"]
    for k in range(turns):
        tool = ("trackOrderTool", '{orderId: "12345"}') if k % 2 == 0 else ("getDateAndTimeTool", "{}")
        lines += ["  - assistant:", f'      - say: "{LONG_ANSWER}"',
                  "  - assistant:", f"      - tool: {tool[0]}", f"        input: {tool[1]}",
                  '      - say: "Done, that is all."']
    return "\n".join(lines) + "\n"


def cycle_pcm(cycles: int) -> bytes:
    q1, q2 = sample_pcm("what_time_is_it.wav"), sample_pcm("thanks_bye.wav")
    one = q1 + bytes(int(SILENCE_1 * 32000)) + q2 + bytes(int(SILENCE_2 * 32000))
    return one * cycles


def write_inputs(folder: Path, cycles: int) -> tuple[Path, bytes, Path]:
    """The scenario file, the microphone PCM and the same PCM as a WAV file, for `cycles` cycles."""
    scenario = folder / "bench.scenario.yaml"
    scenario.write_text(scenario_yaml(4 * cycles + 4))
    pcm = cycle_pcm(cycles)
    wav = folder / "mic.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    return scenario, pcm, wav


def cycle_seconds() -> float:
    return len(cycle_pcm(1)) / 32000


@contextlib.asynccontextmanager
async def emulator_process(scenario: Path) -> AsyncIterator[dict[str, str]]:
    """`agent-run emulate --quiet` in a child process; yields the environment it prints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner", "emulate", "--quiet", "--scenario", str(scenario),
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    env: dict[str, str] = {}
    try:
        async with asyncio.timeout(30):
            while not (line := (await proc.stdout.readline()).decode()).startswith("#"):
                for token in line.removeprefix("export ").split():
                    key, _, value = token.partition("=")
                    env[key] = value
        yield env
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


# -- runner instrumentation (outside runner/: wrappers and subclasses only) -------------------------


@dataclasses.dataclass
class Marks:
    audio_decoded: dict[int, float] = dataclasses.field(default_factory=dict)
    first_play: dict[int, float] = dataclasses.field(default_factory=dict)
    signals: list[float] = dataclasses.field(default_factory=list)
    tool_decoded: list[float] = dataclasses.field(default_factory=list)
    tool_started: list[float] = dataclasses.field(default_factory=list)
    tool_returned: list[float] = dataclasses.field(default_factory=list)
    tool_sent: list[float] = dataclasses.field(default_factory=list)
    tool_kind: list[str] = dataclasses.field(default_factory=list)


class RecordingPolicy:
    """Wraps the real policy; the time it sees an event is when the runner has decoded it."""

    def __init__(self, inner: Any, marks: Marks) -> None:
        self.inner, self.marks, self.name = inner, marks, inner.name
        self._keep: list[bytes] = []  # keeps pcm objects alive so id() stays unique

    def on_event(self, event: OutputEvent) -> list[Any]:
        now = time.monotonic()
        if isinstance(event, AudioOutput):
            self.marks.audio_decoded[id(event.pcm)] = now
            self._keep.append(event.pcm)
        elif isinstance(event, ToolUse):
            self.marks.tool_decoded.append(now)
        actions = self.inner.on_event(event)
        if any(isinstance(a, FlushPlayback) for a in actions):
            self.marks.signals.append(now)
        return list(actions)

    def mic_open(self, pending: bool) -> bool:
        result: bool = self.inner.mic_open(pending)
        return result


class RecordingSink(NullSink):
    """NullSink (PacedSink, 20 ms blocks) that logs when each block starts playing."""

    def __init__(self, fmt: AudioFormat, marks: Marks) -> None:
        super().__init__(fmt)
        self.marks = marks
        self.played: list[tuple[float, float]] = []
        self._first: int | None = None

    async def write(self, pcm: bytes) -> None:
        if self.pending_ms() <= 0:  # idle: the next block played is this chunk's first sample
            self._first = id(pcm)
        await super().write(pcm)

    def _play(self, block: bytes) -> None:
        now = time.monotonic()
        self.played.append((now, now + len(block) / 2 / self.fmt.sample_rate))
        if self._first is not None:
            self.marks.first_play[self._first] = now
            self._first = None


class RecordingStream:
    """The real BedrockStream, with the time each toolResult payload is handed to it."""

    def __init__(self, inner: Any, marks: Marks) -> None:
        self.inner, self.marks = inner, marks

    async def send(self, payload: bytes) -> None:
        if b'"toolResult"' in payload:
            self.marks.tool_sent.append(time.monotonic())
        await self.inner.send(payload)

    def __getattr__(self, name: str) -> Any:
        # Everything else (receive, wait_accepted, close_input, aclose, ...) is the real stream's.
        return getattr(self.inner, name)


class RecordingConnector:
    """The real BedrockConnector, whose streams are RecordingStreams."""

    def __init__(self, inner: Any, marks: Marks) -> None:
        self.inner, self.marks, self.info = inner, marks, inner.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def open_stream(self, model_id: str) -> RecordingStream:
        return RecordingStream(await self.inner.open_stream(model_id), self.marks)

    async def aclose(self) -> None:
        await self.inner.aclose()


def build_conversation(agent: Any, connector: Any, source: Any, sink: Any, policy: Any,
                       tools: dict[str, Any], seconds: float) -> Conversation:
    """The runner's Conversation as engine.run_agent builds it (kept in one place: the lead is
    reshaping that constructor), with the bench's connector, sink, policy and tools."""
    base = session_setup(agent)

    def new_session(history: Any, first: bool) -> Session:
        setup = dataclasses.replace(base, history=history, greeting=base.greeting if first else None)
        return Session(setup, agent.templates, new_id=lambda: str(uuid.uuid4()))

    return Conversation(
        connector=connector, model_id=agent.model.id, new_session=new_session, source=source, sink=sink,
        policy=policy, tools=tools, transcript=Transcript(None), console=Console(quiet=True),
        options=ConversationOptions(max_duration_s=seconds, rotate_after_s=agent.session.rotate_after_s))


def timed_tool(fn: Callable[..., Any], marks: Marks, make_async: bool) -> Callable[..., Any]:
    def sync(**kwargs: Any) -> Any:
        marks.tool_started.append(time.monotonic())
        marks.tool_kind.append("sync")
        try:
            return fn(**kwargs)
        finally:
            marks.tool_returned.append(time.monotonic())

    async def asynchronous(**kwargs: Any) -> Any:
        marks.tool_started.append(time.monotonic())
        marks.tool_kind.append("async")
        try:
            return fn(**kwargs)
        finally:
            marks.tool_returned.append(time.monotonic())

    return asynchronous if make_async else sync


# -- one run of each client ------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    cpu_per_s: float
    first_play: list[float]
    silence: list[float]
    interruptions: int
    tool_in: dict[str, list[float]]
    tool_out: dict[str, list[float]]


def silence_after(signal: float, played: list[tuple[float, float]]) -> float:
    """How long audio kept playing after `signal`: the end of the contiguous run covering it."""
    end = signal
    for start, stop in sorted(played):
        if stop <= end:
            continue
        if start > end + 0.005:  # a gap: silence was reached
            break
        end = stop
    return end - signal


async def run_runner(wav: Path, seconds: float) -> RunResult:
    from runner.transports.bedrock import open_connector

    agent = load_agent(ROOT / "agents" / "orders.yaml")
    marks = Marks()
    tools = {t.name: dataclasses.replace(
        t, function=timed_tool(t.function, marks, make_async=t.name == "getDateAndTimeTool"))
        for t in agent.tools}
    connector = RecordingConnector(await open_connector(
        region="us-east-1", endpoint=os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]), marks)
    try:
        async with WavSource(wav, AudioFormat(16000), agent.audio.chunk_ms) as source, \
                RecordingSink(AudioFormat(OUT_RATE), marks) as sink:
            conversation = build_conversation(agent, connector, source, sink,
                                              RecordingPolicy(POLICIES["barge-in"](), marks), tools, seconds)
            cpu0, t0 = time.process_time(), time.monotonic()
            await conversation.run()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
            played = list(sink.played)
    finally:
        await connector.aclose()
    first = [marks.first_play[k] - marks.audio_decoded[k]
             for k in marks.first_play if k in marks.audio_decoded]
    tool_in: dict[str, list[float]] = {"sync": [], "async": []}
    tool_out: dict[str, list[float]] = {"sync": [], "async": []}
    for i, kind in enumerate(marks.tool_kind):
        if i < len(marks.tool_decoded):
            tool_in[kind].append(marks.tool_started[i] - marks.tool_decoded[i])
        if i < len(marks.tool_sent):
            tool_out[kind].append(marks.tool_sent[i] - marks.tool_returned[i])
    return RunResult(cpu / wall, first, [silence_after(s, played) for s in marks.signals],
                     len(marks.signals), tool_in, tool_out)


async def run_baseline(pcm: bytes, seconds: float, mic_chunk_frames: int = 1024) -> RunResult:
    agent = load_agent(ROOT / "agents" / "orders.yaml")
    tools = {t.name: (t.function, dict(t.input_schema), t.description) for t in agent.tools}
    client = await sdk_client()
    device = BlockingDevice(OUT_RATE)
    baseline = SampleStyleClient(client, agent.model.id, system_prompt=agent.system_prompt,
                                 voice=agent.voice, tools=tools, out_rate=OUT_RATE, device=device,
                                 mic_chunk_frames=mic_chunk_frames)
    cpu0, t0 = time.process_time(), time.monotonic()
    async with asyncio.timeout(seconds + 30):
        await baseline.run(pcm, seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    await client.close()
    r = baseline.record
    first = [r.audio_started[k] - r.audio_decoded[k] for k in r.idle_chunks]
    tool_in = {"inline": [r.tool_started[k] - r.tool_decoded[k] for k in r.tool_started]}
    tool_out = {"inline": [r.tool_sent[k] - r.tool_returned[k] for k in r.tool_sent]}
    return RunResult(cpu / wall, first, [silence_after(s, device.played) for s in r.signals],
                     len(r.signals), tool_in, tool_out)


# -- tool dispatch micro-benchmark ------------------------------------------------------------------


async def tool_micro(n: int) -> dict[str, tuple[list[float], list[float]]]:
    """invoke_tool's own overhead: call -> handler starts, handler returns -> JSON result back."""
    marks: dict[str, float] = {}
    schema = {"type": "object", "properties": {"orderId": {"type": "string"}}, "required": ["orderId"]}

    def sync_tool(orderId: str) -> dict[str, Any]:
        marks["start"] = time.perf_counter()
        result = {"orderId": orderId, "status": "shipped"}
        marks["end"] = time.perf_counter()
        return result

    async def async_tool(orderId: str) -> dict[str, Any]:
        return sync_tool(orderId)

    out: dict[str, tuple[list[float], list[float]]] = {}
    for label, fn in (("sync (thread)", sync_tool), ("async (loop)", async_tool)):
        ins, outs = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            await invoke_tool(fn, {"orderId": "12345"}, input_schema=schema, timeout_s=10, name="t")
            t1 = time.perf_counter()
            ins.append(marks["start"] - t0)
            outs.append(t1 - marks["end"])
        out[label] = (ins, outs)
    ins, outs = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        result = sync_tool(orderId="12345")
        json.dumps(result)
        t1 = time.perf_counter()
        ins.append(marks["start"] - t0)
        outs.append(t1 - marks["end"])
    out["direct call + json.dumps"] = (ins, outs)
    return out


# -- main ------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    seconds = cycle_seconds() * args.cycles + 1.0
    print(f"machine: {os.cpu_count()} cores (shared); each run: {args.cycles} cycle(s) of"
          f" {cycle_seconds():.1f} s = {seconds:.0f} s of conversation; {args.reps} run(s) per client\n")
    runner_results: list[RunResult] = []
    baseline_results: list[RunResult] = []
    same_rate_results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        scenario, pcm, wav = write_inputs(Path(tmp), args.cycles)
        clients: list[tuple[list[RunResult], Callable[[], Any]]] = [
            (runner_results, lambda: run_runner(wav, seconds)),
            (baseline_results, lambda: run_baseline(pcm, seconds))]
        if args.same_rate:
            clients.append((same_rate_results, lambda: run_baseline(pcm, seconds, mic_chunk_frames=512)))
        for _ in range(args.reps):  # interleaved, so a busy moment of the machine hits all alike
            for results, run in clients:
                async with emulator_process(scenario) as env:
                    os.environ.update(env)
                    results.append(await run())
    micro = await tool_micro(args.tool_calls)

    def collect(results: list[RunResult], attr: str) -> list[float]:
        return [x for r in results for x in getattr(r, attr)]

    def tools(results: list[RunResult], which: str, kind: str) -> list[float]:
        return [x for r in results for x in getattr(r, which).get(kind, [])]

    r, b = runner_results, baseline_results
    print("a. CPU per real-time session (this process, all threads; % of one core, per run):")
    print(f"   runner  : {spread([x.cpu_per_s for x in r], 100, ' %', 2)}")
    print(f"   baseline: {spread([x.cpu_per_s for x in b], 100, ' %', 2)}")
    ratio = statistics.median(x.cpu_per_s for x in r) / statistics.median(x.cpu_per_s for x in b)
    print(f"   runner / baseline: x{ratio:.2f}")
    if same_rate_results:
        same = statistics.median(x.cpu_per_s for x in same_rate_results)
        print(f"   baseline, 32 ms mic chunks (the runner's event rate): "
              f"{spread([x.cpu_per_s for x in same_rate_results], 100, ' %', 2)}"
              f"; runner / it: x{statistics.median(x.cpu_per_s for x in r) / same:.2f}")
    print("\nb. audioOutput decoded -> first sample starts playing (chunks arriving at an idle sink):")
    print(f"   runner  : {dist(collect(r, 'first_play'))}")
    print(f"   baseline: {dist(collect(b, 'first_play'))}")
    print("\nc. interruption signal decoded -> silence at the sink (assistant audio still heard):")
    print(f"   runner  : {dist(collect(r, 'silence'), digits=1)}"
          f"  [{sum(x.interruptions for x in r)} interruptions]")
    print(f"   baseline: {dist(collect(b, 'silence'), digits=1)}"
          f"  [{sum(x.interruptions for x in b)} interruptions]")
    print("\nd. tool dispatch, in the conversation (toolUse decoded -> handler starts"
          " | handler returns -> toolResult handed to the transport):")
    for kind in ("sync", "async"):
        print(f"   runner {kind:5}     : {dist(tools(r, 'tool_in', kind))}"
              f" | {dist(tools(r, 'tool_out', kind))}")
    print(f"   baseline inline  : {dist(tools(b, 'tool_in', 'inline'))}"
          f" | {dist(tools(b, 'tool_out', 'inline'))}")
    print("     (the baseline calls the tool only when the TOOL block's contentEnd arrives, in its reader)")
    print(f"\n   invoke_tool micro-benchmark ({args.tool_calls} calls; call -> handler starts"
          " | handler returns -> JSON result returned):")
    for label, (ins, outs) in micro.items():
        print(f"   {label:25}: {dist(ins, 1e6, ' µs', 1)} | {dist(outs, 1e6, ' µs', 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run per client (CI)")
    parser.add_argument("--reps", type=int, default=2, help="runs per client")
    parser.add_argument("--cycles", type=int, default=2, help="question/interruption cycles per run")
    parser.add_argument("--tool-calls", type=int, default=1000)
    parser.add_argument("--no-same-rate", dest="same_rate", action="store_false",
                        help="skip the third client: the baseline with 32 ms mic chunks, as many "
                        "audioInput events as the runner")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.cycles, args.tool_calls, args.same_rate = 1, 1, 300, False
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
