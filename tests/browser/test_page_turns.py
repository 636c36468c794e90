"""Per-turn figures of a conversation through the page: the "first sample played" is the page's
word (its worklet echoes the server's mark after the answer's first block once it has rendered it),
not the moment the server sent the audio.

Headless Chromium with a WAV as its microphone against a real `agent-run serve --transcripts DIR`
(uvicorn, the real SDK over TLS to the emulator). The page's player waits for 60 ms of audio (or
60 ms) before it starts after silence, so the answer's first block cannot have played sooner than
that after it arrived: the turn entry must show it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdp import Browser
from test_page import ANSWERED

PREBUFFER_MS = 60  # pcm-worklet.js's PlaybackProcessor default


def _transcript(folder: Path, timeout_s: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        files = sorted(folder.glob("*.jsonl"))
        if files:
            entries = [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]
            if entries and entries[-1].get("event") == "end":
                return entries
        assert time.monotonic() < deadline, f"no complete transcript in {folder}"
        time.sleep(0.1)


def test_a_spoken_turn_reports_when_the_page_played_the_answer(
        chromium: str, mic_wav: Path, serve: Callable[..., str], tmp_path: Path) -> None:
    transcripts = tmp_path / "transcripts"
    url = serve("--transcripts", str(transcripts))
    page_stats: dict[str, Any] = {}

    async def body() -> None:
        async with asyncio.timeout(100), Browser(chromium, tmp_path, fake_audio=mic_wav) as browser, \
                browser.page(url) as page:
            await page.click("#start")
            await page.wait_for("window.agentRun.connection === 'connected'", "the page to connect")
            await page.wait_for(ANSWERED, "the spoken answer's text", wait_s=60)
            await page.wait_for("window.agentRun.playedSamples > 2 * window.agentRun.ready.output_rate",
                                "two seconds of the answer to be played", wait_s=30)
            await page.wait_for("window.agentRun.state === 'listening'", "the answer to end", wait_s=30)
            await asyncio.sleep(2.0)  # its turn closes once it has played and 1 s after END_TURN
            page_stats.update(await page.evaluate("window.agentRun"))
            await page.click("#stop")
            await page.wait_for("window.agentRun.connection === 'closed'", "the conversation to end")

    asyncio.run(body())
    assert page_stats["marksEchoed"] > 2, page_stats
    entries = _transcript(transcripts)
    turns = [e for e in entries if e["type"] == "turn"]
    spoken = [t for t in turns if t["trigger"] == "speech" and "speech_end_to_first_audio_ms" in t]
    assert spoken, turns
    for turn in spoken:
        audio, played = turn["speech_end_to_first_audio_ms"], turn["speech_end_to_first_played_ms"]
        # Counting what the server sent (as before), it read a few milliseconds after the first audio.
        assert played >= audio + PREBUFFER_MS, turn
        assert played <= audio + 2000, turn  # and not far later (a busy machine)
