"""Soak: a long emulated conversation with frequent stream rotations and injected faults.

Everything runs in this process, through the real engine (`run_agent`: WAV mic, simple policy,
WAV speaker, transcript), the real aws-sdk-bedrock-runtime client over TLS and the in-process
emulator, exactly as tests/continuation does. The agent rotates its stream every
--rotate-after-s seconds (at a turn boundary) and the emulator ends any stream older than
--time-limit-s with ModelTimeoutException (the 8-minute limit, shortened).

Faults. A scenario fault fires once per emulator, so the soak is cut into segments of about
--segment-s seconds; each segment is one conversation against a fresh emulator that injects all
four kinds once, spread over the segment, so the faults repeat segment after segment:
  throttle_connects: 2        the first two stream requests get 429 ThrottlingException
  reset_after_events: 100     RST_STREAM of the first stream to reach 100 input events (early)
  stream_error_at_turn: ~1/3  modelStreamErrorException in the middle of that turn
  invalid_bytes_at_turn: ~2/3 corrupt event-stream bytes in the middle of that turn
plus the stream time limit. --quick is one segment of ~40 s; the default is ~2.5 minutes
(3 segments); --minutes N sets the total.

Input: N utterances (samples/*.wav in turn) each followed by --gap-s of silence, with +-2 LSB of
dither (about -84 dBFS, far below the emulator's -40 dBFS VAD threshold) so that every 32 ms mic
chunk of the file is unique and can be recognised in what the emulator received. The scenario
answers turn i (user "turn i") with "Answer i.".

Figures:
  turns     scripted vs completed: transcript has user "turn i" AND assistant "Answer i.";
            duplicates and unexpected entries are listed.
  streams   opened (transcript `session` start entries), how each began (rotation, reconnect after
            <error>) and how each ended (error kinds).
  audio     bytes read by the mic, sent by the runner (replays included), received by the
            emulator, dropped by the runner's hold-back bound. Then by content: every chunk of the
            emulator's recorded audio is matched to its chunk of the input file; lost = chunks of
            the file never received (speech vs silence; silence chunks the simple policy muted
            while the answer played arrive as zeros, counted apart), replayed = chunks received
            more than once (after a failure the runner re-sends the audio the service had not
            transcribed yet, so "received" exceeds "read").
  reconnect from the failed stream's `session` end entry to the next stream's start entry, to its
            first audio at the emulator; and the outage seen by the service (last audio received
            by the failed stream -> first audio of the next). p50/p99.
  hand-over for rotations: new stream's start entry -> its first audio at the emulator, and the
            audio gap at the service (old stream's last audio -> new stream's first audio).
  memory    RSS and tracemalloc's traced size sampled every --sample-s; MB/minute is the least-
            squares slope after a --warmup-s warm-up; top tracemalloc growth between the warm-up
            snapshot and the end of the last conversation; retained after each segment (after gc).

Bench-only access to private state: the emulator records USER audio only when asked
(`record_audio`, not an engine option), so the bench sets it on the handler before the first stream,
and consumes each record's buffer as it goes (so the recording does not count as growth).

    .venv/bin/python bench/bench_soak.py [--quick] [--minutes N] [--segment-s 50] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import wave
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import IN_RATE, NOVA2, SAMPLES, pct

from runner.audio.wav import read_wav
from runner.config.loader import load_agent
from runner.console import Console
from runner.conversation import Conversation
from runner.emulator.local import LocalEmulator
from runner.engine import RunOptions, run_agent
from runner.errors import RunnerError

UTTERANCES = ("what_time_is_it.wav", "thanks_bye.wav", "where_is_my_order.wav")
CHUNK_MS = 32  # the agent's audio.chunk_ms (default); the mic reads chunks of this size
CHUNK = IN_RATE * 2 * CHUNK_MS // 1000
SPEECH_DBFS = -45.0  # a chunk louder than this is speech, not dither
POLL_S = 0.01


# -- inputs -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class SegmentInput:
    folder: Path
    wav: Path
    agent: Path
    scenario: Path
    turns: int
    pcm_bytes: int
    faults: dict[str, Any]


def build_segment(folder: Path, seconds: float, args: argparse.Namespace, seed: int) -> SegmentInput:
    folder.mkdir(parents=True, exist_ok=True)
    gap = bytes(int(args.gap_s * IN_RATE) * 2)
    parts: list[bytes] = [bytes(int(0.3 * IN_RATE) * 2)]
    turns = 0
    while sum(map(len, parts)) < seconds * IN_RATE * 2 or turns < 4:
        parts += [read_wav(SAMPLES / UTTERANCES[turns % len(UTTERANCES)], IN_RATE), gap]
        turns += 1
    samples = np.frombuffer(b"".join(parts), dtype=np.int16).astype(np.int32)
    dither = np.random.default_rng(seed).integers(-2, 3, samples.size)
    pcm = np.clip(samples + dither, -32768, 32767).astype(np.int16).tobytes()
    wav = folder / "input.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(IN_RATE)
        out.writeframes(pcm)
    faults = {"throttle_connects": 2, "reset_after_events": 100,
              "stream_error_at_turn": max(2, turns // 3), "invalid_bytes_at_turn": max(3, 2 * turns // 3)}
    return SegmentInput(folder, wav, _write_agent(folder, args.rotate_after_s),
                        _write_scenario(folder, turns, faults), turns, len(pcm), faults)


def _write_agent(folder: Path, rotate_after_s: float) -> Path:
    path = folder / "agent.yaml"
    path.write_text(f"""\
version: 1
name: soak
description: a short-answer agent for the soak benchmark
model: {{id: {NOVA2}, region: us-east-1}}
voice: matthew
policy: simple
system_prompt: You answer with two words.
session: {{rotate_after_s: {rotate_after_s}}}
audio: {{chunk_ms: {CHUNK_MS}}}
""")
    return path


def _write_scenario(folder: Path, turns: int, faults: dict[str, Any]) -> Path:
    data = {"turns": [{"user": f"turn {i}", "assistant": [{"say": f"Answer {i}."}]}
                      for i in range(1, turns + 1)],
            "settings": {"speed": 8}, "faults": faults}
    path = folder / "scenario.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


# -- watching the emulator ------------------------------------------------------------------------

@dataclasses.dataclass
class StreamSeen:
    """What the monitor saw of one emulator stream (wall-clock times, as the transcript's ts)."""

    created: float
    first_audio: float | None = None
    last_audio: float | None = None
    ended_at: float | None = None
    ended: str | None = None
    audio_bytes: int = 0
    chunks: list[int] = dataclasses.field(default_factory=list)  # input chunk index, -1 zeros, -2 ?
    _tail: bytearray = dataclasses.field(default_factory=bytearray)


class Monitor:
    """Polls the emulator's per-stream records; turns their recorded audio into chunk indices."""

    def __init__(self, wav_pcm: bytes) -> None:
        self.emulator: LocalEmulator | None = None
        self.conversation: Conversation | None = None
        self.streams: list[StreamSeen] = []
        self._index = {hash(wav_pcm[i:i + CHUNK]): i // CHUNK for i in range(0, len(wav_pcm), CHUNK)}
        self._zero = hash(bytes(CHUNK))
        self._stop = asyncio.Event()

    # RunObserver
    def emulator_started(self, emulator: LocalEmulator) -> None:
        handler = emulator.handler
        handler._settings = dataclasses.replace(handler._settings, record_audio=True)  # bench-only
        self.emulator = emulator

    def conversation_finished(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.poll()
        if MEMORY is not None:
            MEMORY.conversation_finished()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._stop.wait()
        self.poll()

    def poll(self) -> None:
        if self.emulator is None:
            return
        now = time.time()
        records = self.emulator.handler.sessions
        while len(self.streams) < len(records):
            self.streams.append(StreamSeen(created=now))
        for record, seen in zip(records, self.streams, strict=True):
            if record.audio_bytes > seen.audio_bytes:
                seen.first_audio = seen.first_audio or now
                seen.last_audio = now
                seen.audio_bytes = record.audio_bytes
            if record.audio:
                seen._tail += record.audio
                del record.audio[:]  # consumed: the recording must not look like growth
                self._identify(seen)
            if record.ended is not None and seen.ended is None:
                seen.ended, seen.ended_at = record.ended, now

    def _identify(self, seen: StreamSeen) -> None:
        whole = len(seen._tail) // CHUNK * CHUNK
        for i in range(0, whole, CHUNK):
            key = hash(bytes(seen._tail[i:i + CHUNK]))
            seen.chunks.append(-1 if key == self._zero else self._index.get(key, -2))
        del seen._tail[:whole]


# -- memory -----------------------------------------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    t: float  # s since the soak started
    rss: int
    traced: int
    threads: int
    fds: int


class Memory:
    """Samples RSS, tracemalloc's traced size, threads and open fds; snapshots for top growth."""

    def __init__(self, period_s: float, warmup_s: float, traced: bool) -> None:
        self.period_s, self.warmup_s, self.traced = period_s, warmup_s, traced
        self.t0 = time.monotonic()
        self.samples: list[Sample] = []
        self.segments: list[tuple[float, float]] = []  # (start, end) in s since the soak started
        self.baseline: tracemalloc.Snapshot | None = None
        self.final: tracemalloc.Snapshot | None = None
        self.retained: list[Sample] = []  # after each segment, after gc
        self.start = self.sample_now()

    def sample_now(self) -> Sample:
        return Sample(time.monotonic() - self.t0, rss_bytes(),
                      tracemalloc.get_traced_memory()[0] if self.traced else 0,
                      threading_count(), len(os.listdir("/proc/self/fd")))

    async def run(self) -> None:
        while True:
            self.samples.append(self.sample_now())
            if self.traced and self.baseline is None and self.samples[-1].t >= self.warmup_s:
                self.baseline = tracemalloc.take_snapshot()
            await asyncio.sleep(self.period_s)

    def segment_started(self) -> None:
        self.segments.append((self.sample_now().t, float("inf")))

    def conversation_finished(self) -> None:
        # Taken while the last conversation is still alive: growth inside a long conversation.
        self.samples.append(self.sample_now())
        if self.traced and self.baseline is not None:
            self.final = tracemalloc.take_snapshot()

    def segment_done(self) -> None:
        gc.collect()
        sample = self.sample_now()
        self.segments[-1] = (self.segments[-1][0], sample.t)
        self.retained.append(sample)


def threading_count() -> int:
    """OS threads of this process (awscrt's native threads included, unlike threading.active_count)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


MEMORY: Memory | None = None


# -- one segment --------------------------------------------------------------------------------

@dataclasses.dataclass
class SegmentResult:
    inp: SegmentInput
    code: int | None
    error: str | None
    entries: list[dict[str, Any]]
    streams: list[StreamSeen]
    read: int
    sent: int
    dropped: int
    wall_s: float


async def run_segment(inp: SegmentInput, args: argparse.Namespace) -> SegmentResult:
    pcm = read_wav(inp.wav, IN_RATE)
    monitor = Monitor(pcm)
    transcript = inp.folder / "transcript.jsonl"
    options = RunOptions(input_file=inp.wav, output_file=inp.folder / "out.wav", transcript=transcript,
                         emulate=True, scenario=inp.scenario, emulator_time_limit_s=args.time_limit_s,
                         idle_exit_s=1.5, max_duration_s=len(pcm) / 2 / IN_RATE + 60)
    code: int | None = None
    error: str | None = None
    started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(monitor.run())
        try:
            async with asyncio.timeout(len(pcm) / 2 / IN_RATE + 120):  # nothing may hang
                code = await run_agent(load_agent(inp.agent), options, Console(quiet=True), monitor)
        except (RunnerError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            monitor.stop()
        await watcher
    conv = monitor.conversation
    # The transcript is parsed after the soak (load_transcripts), so that parsing it does not
    # show up as growth in the memory figures.
    return SegmentResult(inp, code, error, [], monitor.streams,
                         read=conv.source.statistics().bytes_read if conv else 0,
                         sent=conv.audio_bytes_sent if conv else 0,
                         dropped=conv.audio_bytes_dropped if conv else 0,
                         wall_s=time.monotonic() - started)


# -- analysis -------------------------------------------------------------------------------------

def sessions(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["type"] == "session" and e["event"] == event]


def turn_figures(res: SegmentResult) -> dict[str, Any]:
    users = [e["text"] for e in res.entries if e["type"] == "user"]
    answers = [e["text"] for e in res.entries if e["type"] == "assistant"]
    scripted = [(f"turn {i}", f"Answer {i}.") for i in range(1, res.inp.turns + 1)]
    completed = sum(1 for u, a in scripted if u in users and a in answers)
    expected = {u for u, _ in scripted} | {a for _, a in scripted}
    dupes = [t for t, n in Counter(users + answers).items() if n > 1]
    extra = [t for t in users + answers if t not in expected]
    in_order = [u for u in users if u in expected] == [u for u, _ in scripted if u in users]
    return {"scripted": res.inp.turns, "completed": completed, "duplicates": dupes,
            "unexpected": extra, "in_order": in_order,
            "missing": [u for u, a in scripted if u not in users or a not in answers]}


def stream_table(res: SegmentResult) -> list[dict[str, Any]]:
    """One row per runner stream: its start/end entries and, if admitted, the emulator's view."""
    starts = {e["stream"]: e for e in sessions(res.entries, "start")}
    ends = {e["stream"]: e for e in sessions(res.entries, "end")}
    rows = []
    admitted = iter(res.streams)
    for index in sorted(set(starts) | set(ends)):
        end = ends.get(index, {})
        refused = end.get("error") == "ThrottlingException"  # refused before the emulator saw it
        rows.append({"stream": index, "start": starts.get(index), "end": end or None,
                     "seen": None if refused else next(admitted, None)})
    return rows


def timing_figures(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"reconnect_start": [], "reconnect_audio": [], "outage": [],
                                   "rotation_audio": [], "rotation_gap": [], "overlap": []}
    for prev, row in itertools.pairwise(rows):
        start, seen = row["start"], row["seen"]
        if start is None or seen is None or seen.first_audio is None:
            continue
        if start["reason"].startswith("reconnect"):
            # Back to the first failure of the episode: throttled attempts in between count too.
            first = _episode_start(rows, rows.index(row))
            if first is None:
                continue
            out["reconnect_start"].append(start["ts"] - first["end"]["ts"])
            out["reconnect_audio"].append(seen.first_audio - first["end"]["ts"])
            if first["seen"] is not None and first["seen"].last_audio is not None:
                out["outage"].append(seen.first_audio - first["seen"].last_audio)
        elif start["reason"] == "rotation" and prev["seen"] is not None:
            out["rotation_audio"].append(seen.first_audio - start["ts"])
            if prev["seen"].last_audio is not None:
                out["rotation_gap"].append(seen.first_audio - prev["seen"].last_audio)
            if prev["end"] is not None:
                out["overlap"].append(start["ts"] - prev["end"]["ts"])
    return out


def _episode_start(rows: list[dict[str, Any]], at: int) -> dict[str, Any] | None:
    """The first failed stream of the failure episode that row `at` recovers from.

    An episode is a stream that failed plus the attempts after it that failed before carrying
    any audio (throttled requests), so a throttled retry does not restart the clock.
    """
    first = None
    for row in reversed(rows[:at]):
        if row["end"] is None or "error" not in row["end"]:
            break
        if first is not None and _carried_audio(first):
            break
        first = row
        if row["start"] is None or not row["start"]["reason"].startswith("reconnect"):
            break
    return first


def _carried_audio(row: dict[str, Any]) -> bool:
    return row["seen"] is not None and row["seen"].first_audio is not None


def audio_figures(results: Sequence[SegmentResult]) -> dict[str, float]:
    fig: Counter[str] = Counter()
    for res in results:
        pcm = read_wav(res.inp.wav, IN_RATE)
        n = len(pcm) // CHUNK
        loud = {i for i in range(n) if _dbfs(pcm[i * CHUNK:(i + 1) * CHUNK]) > SPEECH_DBFS}
        got = Counter(c for s in res.streams for c in s.chunks if c >= 0)
        fig["file"] += n
        fig["speech"] += len(loud)
        fig["lost"] += sum(1 for i in range(n) if i not in got)
        fig["lost_speech"] += sum(1 for i in loud if i not in got)
        fig["replayed"] += sum(k - 1 for k in got.values())
        fig["zeros"] += sum(1 for s in res.streams for c in s.chunks if c == -1)
        fig["unknown"] += sum(1 for s in res.streams for c in s.chunks if c == -2)
        fig["read"] += res.read
        fig["sent"] += res.sent
        fig["received"] += sum(s.audio_bytes for s in res.streams)
        fig["dropped"] += res.dropped
    return dict(fig)


def _dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return 20 * math.log10(max(rms, 1e-9) / 32768)


def slope_mb_per_min(points: Sequence[tuple[float, int]]) -> float | None:
    if len(points) < 3:
        return None
    ts = [t for t, _ in points]
    ys = [y / 2**20 for _, y in points]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return None if var == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var * 60


# -- report -----------------------------------------------------------------------------------------

def ms(chunks: float) -> str:
    return f"{chunks * CHUNK_MS:.0f} ms"


def bytes_ms(n: float) -> str:
    return f"{n / 2 / IN_RATE * 1000:.0f} ms"


def p50_p99(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return (f"p50 {pct(values, 0.5) * 1e3:.0f} ms, p99 {pct(values, 0.99) * 1e3:.0f} ms, "
            f"max {max(values) * 1e3:.0f} ms (n={len(values)})")


def report(results: Sequence[SegmentResult], memory: Memory, args: argparse.Namespace) -> None:
    print(f"\nsoak: {len(results)} segment(s), rotate_after_s={args.rotate_after_s:g}, "
          f"emulator stream limit {args.time_limit_s:g} s, faults per segment "
          f"{json.dumps(results[0].inp.faults)}")
    rows_all: list[dict[str, Any]] = []
    totals: Counter[str] = Counter()
    starts: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for k, res in enumerate(results, 1):
        turns = turn_figures(res)
        rows = stream_table(res)
        rows_all += rows
        totals["scripted"] += turns["scripted"]
        totals["completed"] += turns["completed"]
        starts.update(r["start"]["reason"] for r in rows if r["start"] is not None)
        ends.update(r["end"].get("error", "ok") for r in rows if r["end"] is not None)
        problems = [f"{name}: {turns[name]}" for name in ("missing", "duplicates", "unexpected")
                    if turns[name]]
        if not turns["in_order"]:
            problems.append("user turns out of order")
        status = f"exit {res.code}" if res.error is None else res.error
        print(f"  segment {k}: {res.inp.pcm_bytes / 2 / IN_RATE:.0f} s of input in {res.wall_s:.0f} s, "
              f"{status}; turns {turns['completed']}/{turns['scripted']}; streams {len(rows)}"
              + ("; " + "; ".join(problems) if problems else ""))
    print(f"turns:     {totals['completed']}/{totals['scripted']} completed (user turn and its answer "
          "in the transcript)")
    print(f"streams:   {len(rows_all)} opened; started by: "
          + ", ".join(f"{r} x{n}" for r, n in starts.most_common()))
    print("           ended: " + ", ".join(f"{r} x{n}" for r, n in ends.most_common()))
    _report_audio(audio_figures(results))
    t: dict[str, list[float]] = {}
    for res in results:
        for key, values in timing_figures(stream_table(res)).items():
            t.setdefault(key, []).extend(values)
    print("reconnect: failure's end entry -> next stream's start entry: " + p50_p99(t["reconnect_start"]))
    print("           failure's end entry -> next stream's first audio at the emulator: "
          + p50_p99(t["reconnect_audio"]))
    print("           outage at the service (failed stream's last audio -> next stream's first): "
          + p50_p99(t["outage"]))
    print("hand-over: new stream's start entry -> its first audio at the emulator: "
          + p50_p99(t["rotation_audio"]))
    print("           audio gap at the service (old stream's last audio -> new stream's first): "
          + p50_p99(t["rotation_gap"]))
    print("           new stream's start entry - old stream's end entry (negative: overlap): "
          + p50_p99(t["overlap"]))
    _report_memory(memory, args.frames)
    if args.streams:
        for k, res in enumerate(results, 1):
            _report_streams(k, stream_table(res))
        print("memory samples (s: RSS MB / traced MB / threads / fds): " + ", ".join(
            f"{x.t:.0f}: {x.rss / 2**20:.0f}/{x.traced / 2**20:.1f}/{x.threads}/{x.fds}"
            for x in memory.samples[::5]))


def _report_streams(segment: int, rows: list[dict[str, Any]]) -> None:
    print(f"segment {segment} streams (times in s from the segment's first start entry):")
    t0 = next(r["start"]["ts"] for r in rows if r["start"] is not None)

    def rel(t: float | None) -> str:
        return "-" if t is None else f"{t - t0:6.2f}"

    for r in rows:
        start, end, seen = r["start"] or {}, r["end"] or {}, r["seen"]
        print(f"  {r['stream']:3d} start {rel(start.get('ts'))} end {rel(end.get('ts'))}  "
              f"{start.get('reason', '?'):42s} -> {end.get('error', 'ok'):26s} "
              + (f"emulator: audio {rel(seen.first_audio)}..{rel(seen.last_audio)} "
                 f"{seen.audio_bytes / 2 / IN_RATE:5.1f} s, ended {seen.ended} at {rel(seen.ended_at)}"
                 if seen is not None else "emulator: refused"))


def _report_audio(a: dict[str, float]) -> None:
    print(f"audio:     input file {ms(a['file'])} ({ms(a['speech'])} speech); mic read "
          f"{bytes_ms(a['read'])}, runner sent {bytes_ms(a['sent'])} (replays included), emulator "
          f"received {bytes_ms(a['received'])}, runner dropped {bytes_ms(a['dropped'])}")
    print(f"           lost (file chunks never received): {ms(a['lost'])}, of which speech "
          f"{ms(a['lost_speech'])}; zero chunks received (policy muted the mic during answers, "
          f"or silence after the file): {ms(a['zeros'])}")
    print(f"           replayed (chunks received more than once, re-sent after failures): "
          f"{ms(a['replayed'])}; unrecognised chunks: {ms(a['unknown'])}")


def _report_memory(mem: Memory, frames: int) -> None:
    if not mem.samples:
        return
    first, last = mem.start, mem.samples[-1]
    after = [x for x in mem.samples if x.t >= mem.warmup_s]
    peak = max(x.rss for x in mem.samples)
    print(f"memory:    RSS {first.rss / 2**20:.1f} MB at start -> {peak / 2**20:.1f} MB peak -> "
          f"{last.rss / 2**20:.1f} MB at the end of the last conversation ({last.t / 60:.1f} min)")
    print(f"           whole soak after {mem.warmup_s:g} s warm-up: RSS {_mbmin(_slope(after, 'rss'))}"
          + (f", traced {_mbmin(_slope(after, 'traced'))}" if mem.traced else "")
          + f"; tracemalloc traced {first.traced / 2**20:.1f} -> {last.traced / 2**20:.1f} MB")
    inside = []
    for start, end in mem.segments:
        # Inside one conversation, after its own start-up (new SDK client, emulator, TLS).
        skip = min(mem.warmup_s, (end - start) / 3)
        inside.append([x for x in mem.samples if start + skip <= x.t <= end])
    print("           inside each conversation: RSS " + ", ".join(_mbmin(_slope(w, "rss")) for w in inside)
          + ("; traced " + ", ".join(_mbmin(_slope(w, "traced")) for w in inside) if mem.traced else ""))
    print("           after each segment (gc'd): " + ", ".join(
        f"RSS {x.rss / 2**20:.1f} MB / traced {x.traced / 2**20:.2f} MB / {x.threads} threads / {x.fds} fds"
        for x in mem.retained) + f"  (at start: {first.threads} threads / {first.fds} fds)")
    if mem.traced:
        print("           (with tracemalloc on, RSS includes its own tables, which grow in steps of ~20 MB,"
              " and every timing is slower: use --no-tracemalloc for RSS and timing figures)")
    if mem.baseline is not None and mem.final is not None:
        _report_top_growth(mem.baseline, mem.final, frames)


def _report_top_growth(baseline: tracemalloc.Snapshot, final: tracemalloc.Snapshot, frames: int) -> None:
    # The bench's own bookkeeping (chunk indices, samples) is not the runner's growth.
    ignore = [tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = final.filter_traces(ignore).compare_to(baseline.filter_traces(ignore),
                                                   "traceback" if frames > 1 else "lineno")
    print("           top tracemalloc growth (warm-up -> end of the last conversation):")
    for stat in stats[:8]:
        where = " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in list(stat.traceback)[::-1][:frames])
        print(f"             {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {where}")


def _slope(samples: Sequence[Sample], field: str) -> float | None:
    return slope_mb_per_min([(x.t, getattr(x, field)) for x in samples])


def _mbmin(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} MB/min"


def _short(filename: str) -> str:
    for marker, prefix in (("site-packages/", ""), ("/runner/", "runner/"), ("/lib/python", "")):
        if marker in filename:
            return prefix + filename.split(marker, 1)[1]
    return filename


# -- main -------------------------------------------------------------------------------------------

async def soak(args: argparse.Namespace, folder: Path) -> tuple[list[SegmentResult], Memory]:
    global MEMORY
    total_s = 40.0 if args.quick else args.minutes * 60
    segments = max(1, round(total_s / args.segment_s))
    seconds = total_s / segments
    inputs = [build_segment(folder / f"segment{k}", seconds, args, seed=k) for k in range(segments)]
    # awscrt reports harmless "never retrieved" errors at stream shutdown; count, don't print.
    noise: Counter[str] = Counter()
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, context: noise.update([str(context.get("message"))]))
    memory = MEMORY = Memory(args.sample_s, args.warmup_s, not args.no_tracemalloc)
    results = []
    async with asyncio.TaskGroup() as tg:
        sampler = tg.create_task(memory.run())
        for k, inp in enumerate(inputs, 1):
            print(f"segment {k}/{segments}: {inp.pcm_bytes / 2 / IN_RATE:.0f} s, {inp.turns} turns ...",
                  flush=True)
            memory.segment_started()
            results.append(await run_segment(inp, args))
            memory.segment_done()
        sampler.cancel()
    for res in results:
        lines = (res.inp.folder / "transcript.jsonl").read_text().splitlines()
        res.entries = [json.loads(line) for line in lines]
    if noise:
        print("loop exception handler: " + ", ".join(f"{m!r} x{n}" for m, n in noise.items()))
    return results, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one segment of ~40 s")
    parser.add_argument("--minutes", type=float, default=2.5, help="total conversation length")
    parser.add_argument("--segment-s", type=float, default=50.0, help="length of one faulted conversation")
    parser.add_argument("--rotate-after-s", type=float, default=4.0)
    parser.add_argument("--time-limit-s", type=float, default=10.0, help="emulator stream limit")
    parser.add_argument("--gap-s", type=float, default=2.5, help="silence after each utterance")
    parser.add_argument("--sample-s", type=float, default=2.0, help="memory sampling period")
    parser.add_argument("--warmup-s", type=float, default=20.0, help="memory slope ignores this start")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc traceback depth")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS only (tracemalloc costs CPU)")
    parser.add_argument("--streams", action="store_true", help="also print every stream and memory sample")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (transcripts, WAVs)")
    args = parser.parse_args()
    if not args.no_tracemalloc:
        tracemalloc.start(args.frames)
    saved = dict(os.environ)  # the emulator exports its endpoint, CA and test credentials
    folder = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        results, memory = asyncio.run(soak(args, folder))
        report(results, memory, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if args.keep:
            print(f"kept {folder}")
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
