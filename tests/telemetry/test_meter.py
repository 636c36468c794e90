"""The turn meter inside a conversation: the first sample played as a real (null) sink reports it,
and a barge-in flush before it plays; tool durations read from the transcript."""

from __future__ import annotations

import asyncio
import io
import time

from runner.audio.base import AudioFormat
from runner.audio.null import NullSink
from runner.console import Console
from runner.protocol.events import AudioOutput, ContentEnd, ContentType, TokenCounts, UsageEvent
from runner.telemetry.meter import TurnMeter
from runner.telemetry.prices import BUILTIN_TABLE
from runner.transcript import Transcript

FMT = AudioFormat(24000)
PCM = bytes(FMT.bytes_for_ms(100))


async def _meter_run(flush_first: bool, earlier_audio_ms: int = 0) -> tuple[TurnMeter, Transcript, str]:
    out = io.StringIO()
    transcript = Transcript(None)
    async with NullSink(FMT) as sink, asyncio.TaskGroup() as tg:
        meter = TurnMeter(model_id="amazon.nova-2-sonic-v1:0", prices=BUILTIN_TABLE, transcript=transcript,
                          console=Console(verbose=True, stream=out), sink=sink, clock=time.monotonic,
                          run_started=lambda: 0.0, spawn=lambda coro, name: tg.create_task(coro, name=name))
        if earlier_audio_ms:  # audio of an earlier answer still ahead in the sink
            earlier = bytes(FMT.bytes_for_ms(earlier_audio_ms))
            meter.queued(len(earlier))
            await sink.write(earlier)
        meter.tracker.text_sent(time.monotonic())
        meter.output(AudioOutput("c1", PCM), time.monotonic())
        meter.queued(len(PCM))
        if flush_first:
            meter.flushed(len(PCM))  # a barge-in before anything was played
        else:
            await sink.write(PCM)
        await asyncio.sleep(0.5)
        transcript.write("tool_result", name="lookup", tool_use_id="t1", duration_ms=12.5, result={})
        meter.output(UsageEvent(TokenCounts(output_speech=9), TokenCounts(), 0, 9, 9), time.monotonic())
        meter.output(ContentEnd("c1", ContentType.AUDIO, "END_TURN"), time.monotonic())
        meter.finish()
    return meter, transcript, out.getvalue()


def test_the_first_sample_played_is_what_the_sink_reports() -> None:
    meter, transcript, out = asyncio.run(_meter_run(flush_first=False))
    [turn] = meter.tracker.turns
    assert turn.first_audio_at is not None and turn.first_played_at is not None
    assert 0 <= turn.first_played_at - turn.first_audio_at < 0.3
    [entry] = [e for e in transcript.entries if e["type"] == "turn"]
    assert entry["tools"] == [{"name": "lookup", "duration_ms": 12.5, "ok": True}]
    assert entry["tokens"]["output_speech"] == 9
    assert "[turn 1 (text); end of speech -> audio" in out and "tools 12 ms" in out
    assert "summary: 1 turn" in out


def test_audio_ahead_in_the_sink_plays_first() -> None:
    meter, _, _ = asyncio.run(_meter_run(flush_first=False, earlier_audio_ms=300))
    [turn] = meter.tracker.turns
    assert turn.first_audio_at is not None and turn.first_played_at is not None
    # 300 ms of earlier audio are played (in real time) before this answer's first sample.
    assert turn.first_played_at - turn.first_audio_at >= 0.25


def test_an_answer_flushed_before_it_played_has_no_first_played() -> None:
    meter, _, _ = asyncio.run(_meter_run(flush_first=True))
    [turn] = meter.tracker.turns
    assert turn.first_audio_at is not None and turn.first_played_at is None
