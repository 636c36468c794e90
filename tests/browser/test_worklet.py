"""The page's audio code in a real headless Chromium, on the static files alone (no agent):
the resampler is a real low-pass filter, the capture processor turns the (fake, WAV-fed)
microphone into 16 kHz PCM in real time, and the playback processor plays gap-free and stops at
once on a flush."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cdp import Browser, Page

LOAD_RESAMPLER = """new Promise((ok, fail) => {
  const s = document.createElement("script");
  s.src = "pcm-worklet.js"; s.onload = ok; s.onerror = () => fail(new Error("no pcm-worklet.js"));
  document.head.append(s);
})"""

# Level of a tone after resampling (dB relative to the input tone), measured after the filter's
# start-up; `f` may lie above the output's Nyquist frequency (then it must be filtered out).
TONE_LEVEL = """((fin, fout, f) => {
  const r = new AgentRunResampler(fin, fout);
  const x = new Float32Array(fin);
  for (let i = 0; i < x.length; i++) x[i] = 0.5 * Math.sin(2 * Math.PI * f * i / fin);
  const parts = [];
  for (let i = 0; i < x.length; i += 128) parts.push(r.push(x.subarray(i, i + 128)));
  const y = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0; for (const p of parts) { y.set(p, o); o += p.length; }
  const tail = y.subarray(Math.round(fout * 0.1));
  let e = 0; for (const v of tail) e += v * v;
  return {level: 20 * Math.log10(Math.sqrt(e / tail.length) / (0.5 / Math.SQRT2)), samples: y.length};
})"""


def run_page(chromium: str, tmp_path: Path, url: str, body: Callable[[Page], Awaitable[None]],
             fake_audio: Path | None = None) -> None:
    async def main() -> None:
        async with asyncio.timeout(90), Browser(chromium, tmp_path, fake_audio=fake_audio) as browser, \
                browser.page(url) as page:
            await body(page)

    asyncio.run(main())


def test_resampler_keeps_the_passband_and_filters_out_what_would_alias(
        chromium: str, static_url: str, tmp_path: Path) -> None:
    levels: dict[tuple[int, int, int], Any] = {}

    async def body(page: Page) -> None:
        await page.evaluate(LOAD_RESAMPLER, await_promise=True)
        for case in [(48000, 16000, 1000), (48000, 16000, 6000), (48000, 16000, 10000), (48000, 16000, 20000),
                     (44100, 16000, 3000), (44100, 16000, 9000), (24000, 48000, 5000), (24000, 44100, 9000),
                     (16000, 16000, 1000)]:
            levels[case] = await page.evaluate(f"{TONE_LEVEL}({case[0]}, {case[1]}, {case[2]})")

    run_page(chromium, tmp_path, static_url + "index.html", body)
    for (fin, fout, f), got in levels.items():
        # one second of input gives one second of output, less the filter's half-width
        assert abs(got["samples"] - fout) < fout * 0.01, (fin, fout, got)
        if f < 0.45 * min(fin, fout):
            assert abs(got["level"]) < 0.1, f"{f} Hz, {fin} -> {fout} Hz: passband at {got['level']:.2f} dB"
        else:
            assert got["level"] < -60, f"{f} Hz, {fin} -> {fout} Hz: aliased at {got['level']:.1f} dB"


CAPTURE = """(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const ctx = new AudioContext();
  await ctx.resume();
  await ctx.audioWorklet.addModule("pcm-worklet.js");
  const node = new AudioWorkletNode(ctx, "agent-run-capture", {processorOptions: {outRate: 16000}});
  const got = {samples: 0, peak: 0, blocks: new Set(), start: null, seconds: 0};
  node.port.onmessage = (e) => {
    const a = new Int16Array(e.data);
    if (got.start === null) got.start = ctx.currentTime;
    got.samples += a.length; got.blocks.add(a.length);
    for (const v of a) got.peak = Math.max(got.peak, Math.abs(v));
  };
  ctx.createMediaStreamSource(stream).connect(node);
  node.connect(ctx.destination);
  await new Promise((ok) => setTimeout(ok, 3000));
  got.seconds = ctx.currentTime - got.start;
  await ctx.close();
  return {samples: got.samples, peak: got.peak, blocks: [...got.blocks], seconds: got.seconds};
})()"""


def test_capture_turns_the_microphone_into_pcm_at_the_servers_rate(
        chromium: str, static_url: str, mic_wav: Path, tmp_path: Path) -> None:
    result: dict[str, Any] = {}

    async def body(page: Page) -> None:
        result.update(await page.evaluate(CAPTURE, await_promise=True, user_gesture=True, wait_s=30))

    run_page(chromium, tmp_path, static_url + "index.html", body, fake_audio=mic_wav)
    assert result["blocks"] == [320], result  # 20 ms blocks at 16 kHz
    # real time: 16000 samples per second of the audio clock (not the context's 44.1 or 48 kHz);
    # the margin is for messages still in flight when the main thread, on a busy machine, counts
    expected = 16000 * result["seconds"]
    assert abs(result["samples"] - expected) < 2 * 320 + expected * 0.05, result
    assert result["peak"] > 1000, f"the WAV microphone was not heard: {result}"


# The player's output is recorded by a capture processor at 24 kHz (the player's input rate), so
# what was played can be compared with what was sent.
PLAYBACK = """(async (flushAfterMs) => {
  const ctx = new AudioContext();
  await ctx.resume();
  await ctx.audioWorklet.addModule("pcm-worklet.js");
  const player = new AudioWorkletNode(ctx, "agent-run-playback", {numberOfInputs: 0, outputChannelCount: [1],
    processorOptions: {inRate: 24000, reportMs: 20}});
  const rec = new AudioWorkletNode(ctx, "agent-run-capture",
    {processorOptions: {outRate: 24000, blockMs: 10}});
  const heard = [];
  let stats = null;
  rec.port.onmessage = (e) => heard.push(...new Int16Array(e.data));
  player.port.onmessage = (e) => { stats = e.data; };
  player.connect(rec); rec.connect(ctx.destination);
  // 2 s of a 440 Hz tone, sent as 100 frames of 20 ms, like the server sends it
  const total = 48000;
  for (let start = 0; start < total; start += 480) {
    const pcm = new Int16Array(480);
    for (let i = 0; i < 480; i++) {
      pcm[i] = Math.round(12000 * Math.sin(2 * Math.PI * 440 * (start + i) / 24000));
    }
    player.port.postMessage(pcm.buffer, [pcm.buffer]);
  }
  let playedAtFlush = null;
  if (flushAfterMs !== null) {
    await new Promise((ok) => setTimeout(ok, flushAfterMs));
    player.port.postMessage({type: "flush"});
    await new Promise((ok) => setTimeout(ok, 100));
    playedAtFlush = stats.played;
  }
  await new Promise((ok) => setTimeout(ok, flushAfterMs === null ? 2600 : 700));
  await ctx.close();
  // where sound starts and ends, and the longest silence in between
  let first = -1, last = -1, gap = 0, run = 0;
  for (let i = 0; i < heard.length; i++) {
    if (Math.abs(heard[i]) <= 2) { run++; continue; }
    if (first < 0) first = i; else gap = Math.max(gap, run);
    last = i; run = 0;
  }
  return {first, last, gap, stats, playedAtFlush, sent: total};
})"""


def test_playback_is_gap_free_and_a_flush_silences_it_at_once(
        chromium: str, static_url: str, tmp_path: Path) -> None:
    whole: dict[str, Any] = {}
    cut: dict[str, Any] = {}

    async def body(page: Page) -> None:
        for flush_after, into in (("null", whole), ("500", cut)):
            script = f"{PLAYBACK}({flush_after})"
            into.update(await page.evaluate(script, await_promise=True, user_gesture=True, wait_s=30))

    run_page(chromium, tmp_path, static_url + "index.html", body)
    # all of it, played back to back: the longest quiet run is a zero crossing, not a gap
    assert whole["stats"]["received"] == whole["sent"], whole
    assert whole["stats"]["played"] >= whole["sent"] - 24, whole
    assert whole["gap"] <= 2, whole
    assert abs((whole["last"] - whole["first"]) - whole["sent"]) < 48, whole
    # flushed after about half a second: it played no more afterwards, and what was heard ends
    # where the player stopped, within one render quantum (128 frames) and the filters' delay
    assert cut["stats"]["flushes"] == 1, cut
    assert cut["stats"]["queuedMs"] == 0, cut
    assert cut["stats"]["played"] == cut["playedAtFlush"], cut
    assert 0 < cut["playedAtFlush"] < cut["sent"] - 0.5 * 24000, cut  # cut well before the end
    heard = cut["last"] - cut["first"]
    assert heard <= cut["playedAtFlush"] + 128, cut


# Marks among the audio (the server's `mark` messages): each comes back once the audio before it has
# been rendered; a flush drops the marks it drops the audio of.
MARKS = """(async () => {
  const ctx = new AudioContext();
  await ctx.resume();
  await ctx.audioWorklet.addModule("pcm-worklet.js");
  const player = new AudioWorkletNode(ctx, "agent-run-playback", {numberOfInputs: 0, outputChannelCount: [1],
    processorOptions: {inRate: 24000, reportMs: 10}});
  player.connect(ctx.destination);
  const echoes = [];
  player.port.onmessage = (e) => {
    if (e.data.type === "mark") echoes.push({name: e.data.name, played: e.data.played});
  };
  const frame = () => new Int16Array(480).fill(3000).buffer;  // 20 ms at 24 kHz
  const send = (buf) => player.port.postMessage(buf, [buf]);
  player.port.postMessage({type: "mark", name: "idle"});  // nothing before it: back at once
  send(frame());
  player.port.postMessage({type: "mark", name: "first"});  // after the first 20 ms
  for (let i = 0; i < 49; i++) send(frame());
  player.port.postMessage({type: "mark", name: "end"});  // after 1 s: a flush comes first
  await new Promise((ok) => setTimeout(ok, 400));
  player.port.postMessage({type: "flush"});
  send(frame());
  player.port.postMessage({type: "mark", name: "next"});
  await new Promise((ok) => setTimeout(ok, 600));
  await ctx.close();
  return echoes;
})()"""


def test_playback_echoes_marks_once_the_audio_before_them_played(
        chromium: str, static_url: str, tmp_path: Path) -> None:
    echoes: list[dict[str, Any]] = []

    async def body(page: Page) -> None:
        echoes.extend(await page.evaluate(MARKS, await_promise=True, user_gesture=True, wait_s=30))

    run_page(chromium, tmp_path, static_url + "index.html", body)
    assert [e["name"] for e in echoes] == ["idle", "first", "next"], echoes  # "end": dropped by the flush
    idle, first, after = echoes
    assert idle["played"] == 0, echoes
    # Each came back once the frame before it had been rendered (480 samples, less the resampler's
    # half-width, 18, which it keeps until more comes), and not a render quantum (128 frames at up
    # to 48 kHz: 64 samples at 24 kHz) later.
    assert 480 - 18 <= first["played"] <= 480 + 64, echoes
    assert first["played"] + 480 <= after["played"] < 24000, echoes  # cut after ~400 ms, then one more
