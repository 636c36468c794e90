"""The /ws protocol's marks, end to end: a real server with the emulator, real WebSocket callers.

A caller whose hello says `"marks": true` is sent marks among the answer's audio and echoes each,
here after holding it PLAYED_LATE_S (a player that starts late): its turn's first sample played
shows that delay. A caller that does not say so is sent no marks, and its turn has no such figure
(rather than the moment the server sent the audio).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.serve.serve_helpers import (
    QUESTION_WAV,
    ServeProcess,
    open_ws,
    read_pcm,
    stream_pcm,
    transcript_entries,
)

pytestmark = pytest.mark.timeout(120)

PLAYED_LATE_S = 0.25


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("marks")) as proc:
        proc.wait_ready()
        yield proc


async def _echo_late(ws: ClientConnection, name: str) -> None:
    await asyncio.sleep(PLAYED_LATE_S)
    await ws.send(json.dumps({"type": "mark", "name": name}))


async def _call(server: ServeProcess, *, marks: bool) -> list[str]:
    """Ask where the order is, take the answer (echoing marks, late, if `marks`); the marks got."""
    got: list[str] = []
    echoes: set[asyncio.Task[None]] = set()
    async with open_ws(server.ws_url) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(json.dumps({"type": "hello", "marks": True} if marks else {"type": "hello"}))
        sender = asyncio.create_task(stream_pcm(ws, read_pcm(QUESTION_WAV), ready["input_rate"],
                                                then_silence_s=20))
        answered = quiet_since = None
        async with asyncio.timeout(40):
            # Until the answer has been said and no audio came for 1.5 s (it has all played).
            while answered is None or quiet_since is None or time.monotonic() - quiet_since < 1.5:
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    quiet_since = quiet_since or time.monotonic()
                    continue
                if isinstance(message, bytes):
                    quiet_since = None
                    continue
                msg: dict[str, Any] = json.loads(message)
                if msg["type"] == "mark":
                    got.append(msg["name"])
                    if marks:
                        task = asyncio.create_task(_echo_late(ws, msg["name"]))
                        echoes.add(task)
                        task.add_done_callback(echoes.discard)
                elif msg["type"] == "transcript" and "delivered" in msg["text"]:
                    answered = True
        sender.cancel()
    return got


def _spoken_turn(server: ServeProcess, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        files = server.transcript_files()
        if len(files) >= n:
            entries = transcript_entries(files[n - 1])
            if entries and entries[-1].get("event") == "end":
                break
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.1)
    turns = [e for e in entries if e["type"] == "turn" and "speech_end_to_first_audio_ms" in e]
    assert turns and turns[0]["trigger"] == "speech", entries
    return turns[0]


def test_a_caller_that_echoes_marks_tells_when_the_answer_played(server: ServeProcess) -> None:
    got = asyncio.run(_call(server, marks=True))
    assert len(got) >= 3, got
    turn = _spoken_turn(server, 1)
    audio, played = turn["speech_end_to_first_audio_ms"], turn["speech_end_to_first_played_ms"]
    # The mark after the first 20 ms block came back PLAYED_LATE_S after it was sent.
    assert played >= audio + PLAYED_LATE_S * 1000, turn
    assert played <= audio + PLAYED_LATE_S * 1000 + 1500, turn


def test_a_caller_that_does_not_gets_no_marks_and_no_played_figure(server: ServeProcess) -> None:
    got = asyncio.run(_call(server, marks=False))
    assert got == []
    turn = _spoken_turn(server, 2)
    assert "speech_end_to_first_played_ms" not in turn, turn
