"""Per-turn figures of a phone call: the "first sample played" is Twilio's word (its echo of the
mark after the answer's first frame), not the moment the server sent the audio.

A real `agent-run serve` with the emulator, and the simulated Twilio of twilio_caller.py set to
start playing audio 300 ms after it arrives (a media path that buffers): the turn entries of the
call's transcript must show that delay between the first audio decoded and the first sample played.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from twilio_caller import SAMPLES, Heard, ServeProcess, TwilioCaller, wav_as_ulaw

pytestmark = pytest.mark.timeout(120)

START_DELAY_S = 0.3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("turns"), SAMPLES / "orders.scenario.yaml") as server:
        server.wait_ready()
        yield server


async def _call(server: ServeProcess) -> Heard:
    question = wav_as_ulaw(SAMPLES / "where_is_my_order.wav")
    url = f"ws://127.0.0.1:{server.port}/twilio/stream"
    async with TwilioCaller(url, start_delay_s=START_DELAY_S) as caller:
        speaking = asyncio.create_task(caller.speak(question, then_silence_s=30))
        await caller.wait_answer_arrived(25, played=True)
        await asyncio.sleep(1.5)  # the turn closes once its answer has played (and 1 s after END_TURN)
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        speaking.cancel()
        return caller.heard


def test_first_sample_played_is_what_twilio_confirmed(server: ServeProcess) -> None:
    heard = asyncio.run(_call(server))
    assert heard.bad == [] and heard.close_code == 1000

    [entries] = server.transcripts_done(1)
    turns = [e for e in entries if e["type"] == "turn"]
    spoken = [t for t in turns if t["trigger"] == "speech" and "speech_end_to_first_audio_ms" in t]
    assert spoken, turns
    for turn in spoken:
        audio, played = turn["speech_end_to_first_audio_ms"], turn["speech_end_to_first_played_ms"]
        # The answer's first frame started playing START_DELAY_S after it reached "Twilio" and
        # ended 20 ms later, when the mark after it came back: the figure cannot be earlier.
        # (Counting what was sent, as before, it read a few milliseconds after the first audio.)
        assert played >= audio + START_DELAY_S * 1000 + 20 - 1, turn
        assert played <= audio + START_DELAY_S * 1000 + 1500, turn  # and not much later (a busy machine)
    summary = next(e for e in entries if e["type"] == "summary")
    assert summary["figures"]["speech_end_to_first_played_ms"]["n"] >= len(spoken)


@pytest.fixture
def draining_server(tmp_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path, SAMPLES / "orders.scenario.yaml", "--drain-timeout", "1") as server:
        server.wait_ready()
        yield server


async def _call_cut_by_a_drain(server: ServeProcess) -> Heard:
    question = wav_as_ulaw(SAMPLES / "where_is_my_order.wav")
    async with TwilioCaller(f"ws://127.0.0.1:{server.port}/twilio/stream") as caller:
        speaking = asyncio.create_task(caller.speak(question, then_silence_s=30))
        # The answer (~5 s of speech) has begun: the server is told to stop; its drain (1 s) ends
        # the call while the answer still plays.
        assert await caller.wait_for(lambda h: h.media_frames > 25, 30), caller.heard
        server.terminate()
        await caller.wait_for(lambda h: h.close_code is not None, 15)
        speaking.cancel()
        return caller.heard


def test_an_answer_cut_by_the_drain_gets_its_heard_entry(draining_server: ServeProcess) -> None:
    server = draining_server
    heard = asyncio.run(_call_cut_by_a_drain(server))
    assert heard.close_code == 1001  # the drain ended the call
    assert server.proc.wait(timeout=20) == 143
    [entries] = server.transcripts_done(1)
    assert entries[-1]["event"] == "end" and entries[-1]["reason"] == "server shutting down", entries[-3:]
    answers = [e for e in entries if e["type"] == "heard"]
    # What the marks confirmed was heard; the rest, still playing, counts as neither.
    assert answers and answers[-1]["how"] == "call ended", answers
    last = answers[-1]
    assert 0 < last["played_ms"] < last["sent_ms"] and last["cut_ms"] == 0, last
    assert last["played_ms"] <= heard.played_frames * 20 + 20, (last, heard.played_frames)
