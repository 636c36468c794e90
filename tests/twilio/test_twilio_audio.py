"""TwilioSource and TwilioSink against a recording MediaLink (real clock, real resampler)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from runner.audio.base import AudioFormat
from runner.serve.frontends.twilio_audio import TwilioSink, TwilioSource


def tone(freq: float, ms: int, rate: int, amp: float = 8000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * freq * t) * amp).astype("<i2").tobytes()


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(float)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A sync test that runs the coroutine function on a fresh loop (the project's habit)."""
    @functools.wraps(test)
    def wrapper() -> None:
        asyncio.run(test())
    return wrapper


class RecordingLink:
    """A MediaLink that keeps what it was given; like the protocol, whole 20 ms frames go out and a
    shorter tail waits (unless a mark follows: then it is padded)."""

    def __init__(self) -> None:
        self.audio = bytearray()
        self.calls: list[tuple[str, float]] = []  # (what, when)
        self.marks: list[tuple[str, int]] = []  # (name, 8 kHz PCM bytes sent before it)
        self._partial = b""

    def send_audio(self, pcm8k: bytes, *, mark: bool) -> tuple[int, str | None]:
        data = self._partial + pcm8k
        whole = len(data) - len(data) % 320
        if mark and whole < len(data):
            data, whole = data + bytes(320 - (len(data) - whole)), len(data) + 320 - (len(data) - whole)
        self._partial = data[whole:]
        self.audio += data[:whole]
        self.calls.append(("audio", time.monotonic()))
        return whole // 2, self.send_mark() if mark else None

    def send_mark(self) -> str:
        self.calls.append(("mark", time.monotonic()))
        name = f"m{len(self.marks) + 1}"
        self.marks.append((name, len(self.audio)))
        return name

    def clear(self) -> None:
        self._partial = b""
        self.calls.append(("clear", time.monotonic()))


@run
async def test_source_resamples_and_fills_silence_on_time() -> None:
    async with TwilioSource(AudioFormat(16000), 32) as source:
        source.feed(tone(300, 200, 8000))
        chunks = [await source.read() for _ in range(5)]  # 160 ms of the 200 fed
        assert all(len(c) == 1024 for c in chunks)
        assert rms(b"".join(chunks[1:])) > 4000
        await source.read()  # the rest (40 ms): one more chunk is there
        start = time.monotonic()
        silent = await source.read()  # nothing fed: silence, after about a chunk
        waited = time.monotonic() - start
        assert silent == bytes(1024)
        assert 0.02 < waited < 0.5


@run
async def test_source_muted_gives_silence_and_drops_speech() -> None:
    async with TwilioSource(AudioFormat(8000), 20) as source:
        source.feed(tone(300, 100, 8000))
        source.mute(True)
        assert await source.read() == bytes(320)
        source.mute(False)
        assert rms(await source.read()) > 4000
        assert source.statistics().muted_chunks == 1


@run
async def test_source_buffer_is_bounded() -> None:
    async with TwilioSource(AudioFormat(8000), 20, buffer_ms=200) as source:
        for _ in range(50):
            source.feed(tone(300, 20, 8000))
        assert source.statistics().dropped_chunks == 40
        n = 0
        while (await source.read()) != bytes(320):
            n += 1
        assert n == 10


@run
async def test_sink_sends_in_real_time_with_a_short_lead_and_marks_the_end() -> None:
    link = RecordingLink()
    async with TwilioSink(AudioFormat(24000), link, lead_ms=100) as sink:
        start = time.monotonic()
        await sink.write(tone(440, 600, 24000))
        assert sink.pending_ms() > 400
        assert await sink.wait_drained(3.0)
        elapsed = time.monotonic() - start
        await asyncio.sleep(0.05)
    assert 0.45 < elapsed < 2.0  # 600 ms of audio, heard in about real time (slack for a busy machine)
    audio_times = [t for what, t in link.calls if what == "audio"]
    # Never more than the lead (+ a block) ahead of real time.
    for i, t in enumerate(audio_times[:30]):
        assert (i + 1) * 0.020 - (t - start) <= 0.100 + 0.045
    assert link.calls[-1][0] == "mark"
    assert len(link.audio) == pytest.approx(600 * 16, abs=100)  # 8 kHz now, tail included
    assert rms(bytes(link.audio[1000:8000])) > 4000


@run
async def test_sink_flush_clears_at_once() -> None:
    link = RecordingLink()
    async with TwilioSink(AudioFormat(16000), link, lead_ms=100) as sink:
        await sink.write(tone(440, 2000, 16000))
        await asyncio.sleep(0.3)
        dropped = sink.flush()
        assert dropped > 16000 * 2 * 1.2  # most of the 2 s was still queued
        assert sink.pending_ms() == 0
        sent_at_flush = len(link.audio)
        await asyncio.sleep(0.2)
        assert ("clear" in [w for w, _ in link.calls])
        assert len(link.audio) <= sent_at_flush + 160 * 2  # at most a block in flight
        assert sink.statistics().flushes == 1


@run
async def test_an_8khz_agent_needs_no_resampling() -> None:
    pcm = tone(300, 100, 8000)
    async with TwilioSource(AudioFormat(8000), 20) as source:
        source.feed(pcm)
        assert b"".join([await source.read() for _ in range(5)]) == pcm  # bit exact
    link = RecordingLink()
    async with TwilioSink(AudioFormat(8000), link) as sink:
        await sink.write(pcm)
        assert await sink.wait_drained(2.0)
        await asyncio.sleep(0.05)
    assert bytes(link.audio) == pcm


@run
async def test_sink_counts_as_played_only_what_marks_confirm() -> None:
    """bytes_played is Twilio's word (echoed marks), not what was sent; the first mark of a burst
    follows its first whole frame, so an answer's first sample played is known within 20 ms."""
    link = RecordingLink()
    fmt = AudioFormat(24000)
    async with TwilioSink(fmt, link, lead_ms=100) as sink:
        await sink.write(tone(440, 300, 24000))
        await asyncio.sleep(0.1)
        assert sink.statistics().bytes_played == 0  # sent, but Twilio has confirmed nothing
        first, at = link.marks[0]
        assert at == 320  # after the first whole 20 ms frame (the resampler may release more at once)
        sink.mark_reached(first)
        played = sink.statistics().bytes_played
        assert played == fmt.bytes_for_ms(20)  # the first frame, in the agent's format
        assert await sink.wait_drained(3.0)
        await asyncio.sleep(0.05)
        last, _ = link.marks[-1]
        sink.mark_reached(last)  # the mark after the burst: all of it played
        assert sink.statistics().bytes_played == fmt.bytes_for_ms(300)
        sink.mark_reached(first)  # echoed twice, or out of order: changes nothing
        assert sink.statistics().bytes_played == fmt.bytes_for_ms(300)


@run
async def test_a_clear_counts_what_twilio_held_as_done_and_the_next_burst_gets_its_first_mark() -> None:
    link = RecordingLink()
    fmt = AudioFormat(16000)
    async with TwilioSink(fmt, link, lead_ms=100) as sink:
        await sink.write(tone(440, 2000, 16000))
        await asyncio.sleep(0.3)
        outstanding = [name for name, _ in link.marks]
        sink.flush()
        stats = sink.statistics()
        assert stats.bytes_played == sink.playout.sent  # nothing of it will play: not waited for
        for name in outstanding:  # Twilio answers the outstanding marks: they say nothing now
            sink.mark_reached(name)
        assert sink.statistics().bytes_played == stats.bytes_played
        marks_before = len(link.marks)
        await sink.write(tone(440, 200, 16000))
        await asyncio.sleep(0.1)
        name, _ = link.marks[marks_before]  # right after the new answer's first frame
        sink.mark_reached(name)
        assert sink.statistics().bytes_played == stats.bytes_played + fmt.bytes_for_ms(20)
