"""The page in Firefox (Debian's `firefox-esr`, headless, over WebDriver BiDi).

Firefox does not let a page choose the sample rate of a context fed by a microphone, which is why
the page resamples in its AudioWorklet: here the context runs at the rate of the PulseAudio sink
(24 kHz, tests/audio_env.sh) and the microphone is PulseAudio's too, fed with the sample WAV by
`paplay`, so the whole path is the one a Firefox user has.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bidi import Firefox, find_firefox
from test_page import ANSWERED
from test_worklet import LOAD_RESAMPLER, PLAYBACK, TONE_LEVEL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def firefox() -> str:
    found = find_firefox()
    if found is None:
        pytest.skip("firefox not installed (Debian package `firefox-esr`; scripts/dev and CI install it)")
    return found


def test_the_audio_code_works_in_firefox(firefox: str, static_url: str, pulseaudio_env: dict[str, str],
                                         tmp_path: Path) -> None:
    got: dict[str, Any] = {}

    async def main() -> None:
        async with asyncio.timeout(90), Firefox(firefox, tmp_path / "profile", pulseaudio_env) as browser, \
                browser.page(static_url + "index.html") as page:
            await page.evaluate(LOAD_RESAMPLER, await_promise=True)
            got["pass"] = await page.evaluate(f"{TONE_LEVEL}(44100, 16000, 3000)")
            got["alias"] = await page.evaluate(f"{TONE_LEVEL}(48000, 16000, 10000)")
            got["play"] = await page.evaluate(f"{PLAYBACK}(null)", await_promise=True, user_gesture=True,
                                              wait_s=30)

    asyncio.run(main())
    assert abs(got["pass"]["level"]) < 0.1 and got["alias"]["level"] < -60, got
    play = got["play"]
    assert play["stats"]["played"] >= play["sent"] - 24 and play["gap"] <= 2, play


def test_the_page_in_firefox_hears_the_question_and_plays_the_answer(
        firefox: str, serve: Callable[..., str], pulseaudio_env: dict[str, str], tmp_path: Path) -> None:
    url = serve()

    async def main() -> None:
        async with asyncio.timeout(100), Firefox(firefox, tmp_path / "profile", pulseaudio_env,
                                                 fake_media=False) as browser, browser.page(url) as page:
            await page.click("#start")
            await page.wait_for("window.agentRun.connection === 'connected' && window.agentRun.mic === 'on'",
                                "the page to connect and open the microphone")
            await asyncio.to_thread(subprocess.run, ["paplay", "-d", "mic",
                                                     str(ROOT / "samples" / "where_is_my_order.wav")],
                                    env=pulseaudio_env, check=True, timeout=30)
            await page.wait_for(ANSWERED, "the answer's text", wait_s=40)
            shown = await page.evaluate("document.getElementById('transcript').innerText")
            assert "trackOrderTool" in shown, shown
            await page.wait_for("window.agentRun.playedSamples > window.agentRun.ready.output_rate",
                                "a second of the answer to be played", wait_s=30)

    asyncio.run(main())
