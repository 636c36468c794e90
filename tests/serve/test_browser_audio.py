"""The browser front end's audio parts keep the AudioSource/AudioSink rules (runner/audio/base.py)."""

from __future__ import annotations

import asyncio
import itertools
import time

from runner.audio.base import AudioFormat
from runner.serve.frontends.browser import WebSocketSink, WebSocketSource

FMT = AudioFormat(16000)


def test_the_source_never_ends_is_paced_and_pads_with_silence() -> None:
    async def run() -> tuple[list[bytes], float]:
        async with WebSocketSource(FMT, 20) as source:
            source.feed(b"\x01\x00" * 480)  # 30 ms: one full chunk and half of the next
            start = time.monotonic()
            chunks = [await source.read() for _ in range(10)]
            return chunks, time.monotonic() - start

    chunks, elapsed = asyncio.run(run())
    assert all(len(c) == 640 for c in chunks)
    assert chunks[0] == b"\x01\x00" * 320
    assert chunks[1] == b"\x01\x00" * 160 + bytes(320)
    assert chunks[2:] == [bytes(640)] * 8  # nothing sent: silence, not an end
    assert 0.15 <= elapsed < 0.5  # 10 chunks of 20 ms, in real time


def test_the_source_is_bounded_and_drops_the_oldest() -> None:
    async def run() -> tuple[bytes, int]:
        async with WebSocketSource(FMT, 20, max_ms=100) as source:
            for n in range(20):  # 400 ms arrive at once
                source.feed(bytes([n, 0]) * 320)
            return await source.read(), source.statistics().dropped_chunks

    first, dropped = asyncio.run(run())
    assert first == bytes([15, 0]) * 320  # only the newest 100 ms are kept
    assert dropped == 15


def test_a_muted_source_drops_what_it_hears() -> None:
    async def run() -> bytes:
        async with WebSocketSource(FMT, 20) as source:
            source.feed(b"\x05\x00" * 320)
            source.mute(True)
            source.feed(b"\x06\x00" * 320)
            source.mute(False)
            return await source.read()

    assert asyncio.run(run()) == bytes(640)


def test_the_sink_sends_in_real_time_and_a_flush_tells_the_caller() -> None:
    sent: list[bytes] = []
    flushed: list[bool] = []

    async def run() -> tuple[int, float]:
        async with WebSocketSink(AudioFormat(24000), sent.append, lambda: flushed.append(True)) as sink:
            await sink.write(bytes(48000))  # one second
            await asyncio.sleep(0.2)
            dropped = sink.flush()
            return dropped, sink.pending_ms()

    dropped, pending = asyncio.run(run())
    assert flushed == [True]
    assert 4 <= len(sent) <= 16  # ~0.2 s of 20 ms blocks went out, not the whole second
    assert dropped >= 48000 - 16 * 960
    assert pending <= 40


def test_the_sink_marks_each_answer_and_counts_as_played_what_the_page_confirms() -> None:
    """bytes_played is the page's word (echoed marks): a mark follows the first block of a burst of
    speech, its last block, and every mark_every_ms between; a flush settles what the page held."""
    fmt = AudioFormat(24000)
    sent: list[bytes | str] = []  # audio blocks and mark names, in the order they went out

    async def run() -> None:
        async with WebSocketSink(fmt, sent.append, lambda: None, send_mark=sent.append,
                                 mark_every_ms=100) as sink:
            await sink.write(bytes(fmt.bytes_for_ms(40)))
            assert await sink.wait_drained(3.0)
            assert len(sent) == 2 and not sink.played_known  # no marks until the caller says it echoes
            sent.clear()
            sink.echo_marks()
            await sink.write(bytes(fmt.bytes_for_ms(300)))
            assert await sink.wait_drained(3.0)
            marks = [(i, item) for i, item in enumerate(sent) if isinstance(item, str)]
            blocks_before = [sum(1 for x in sent[:i] if isinstance(x, bytes)) for i, _ in marks]
            assert blocks_before[0] == 1  # right after the answer's first 20 ms block
            assert blocks_before[-1] == 15 and sent[-1] == marks[-1][1]  # and after its last
            assert all(b - a <= 5 for a, b in itertools.pairwise(blocks_before))
            assert sink.statistics().bytes_played == 0  # all sent, nothing confirmed yet
            sink.mark_reached(marks[0][1])
            assert sink.statistics().bytes_played == fmt.bytes_for_ms(40 + 20)
            sink.mark_reached(marks[-1][1])
            assert sink.statistics().bytes_played == fmt.bytes_for_ms(40 + 300)
            sink.mark_reached("b999")  # never sent: ignored
            assert sink.statistics().bytes_played == fmt.bytes_for_ms(40 + 300)
            # The next answer: a flush while it plays settles what the page held (it will not play).
            sent.clear()
            await sink.write(bytes(fmt.bytes_for_ms(1000)))
            await asyncio.sleep(0.1)
            first = next(item for item in sent if isinstance(item, str))
            sink.flush()
            assert sink.statistics().bytes_played == sink.playout.sent
            sink.mark_reached(first)  # echoed late, after the flush: says nothing now
            assert sink.statistics().bytes_played == sink.playout.sent

    asyncio.run(run())
