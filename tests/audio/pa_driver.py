"""Runs the PyAudio source/sink in a fresh process for test_pyaudio_devices (see conftest.py for why).

  python pa_driver.py capture SECONDS OUT.raw   record the default input; prints "ready" once open
  python pa_driver.py play FILE.wav             play a file on the default output, wait until heard
  python pa_driver.py flush                     play a long tone, flush it after 500 ms
Each prints one JSON line of results last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from runner.audio.base import AudioFormat
from runner.audio.pyaudio_device import MicSource, SpeakerSink
from runner.audio.wav import read_wav


async def capture(seconds: float, out: str) -> dict[str, object]:
    async with MicSource(None, AudioFormat(16000), 20) as mic:
        print("ready", flush=True)
        chunks = [await mic.read() for _ in range(int(seconds * 50))]
        stats = mic.statistics()
    await asyncio.to_thread(Path(out).write_bytes, b"".join(chunks))
    return {"device_rate": mic.device_rate, **dataclasses.asdict(stats)}


async def play(path: str) -> dict[str, object]:
    pcm = read_wav(path, 24000)
    async with SpeakerSink(None, AudioFormat(24000)) as speaker:
        start = time.monotonic()
        await speaker.write(pcm)
        drained = await speaker.wait_drained(15)
        elapsed = time.monotonic() - start
        stats = speaker.statistics()
    return {"drained": drained, "elapsed_s": elapsed, **dataclasses.asdict(stats)}


async def flush() -> dict[str, object]:
    t = np.arange(24000 * 2) / 24000
    pcm = (np.sin(2 * np.pi * 1000 * t) * 0.5 * 32767).astype("<i2").tobytes()
    async with SpeakerSink(None, AudioFormat(24000)) as speaker:
        await asyncio.sleep(0.3)  # the stream is running (playing silence) before the answer arrives
        await speaker.write(pcm)
        start = time.monotonic()
        await asyncio.sleep(0.5)
        flushed_after = time.monotonic() - start
        dropped = speaker.flush()
        pending_after_flush = speaker.pending_ms()
        await asyncio.sleep(0.3)
        stats = speaker.statistics()
    return {"flushed_after_ms": flushed_after * 1000, "dropped": dropped,
            "pending_after_flush_ms": pending_after_flush, **dataclasses.asdict(stats)}


def main(argv: list[str]) -> int:
    if argv[0] == "capture":
        result = asyncio.run(capture(float(argv[1]), argv[2]))
    elif argv[0] == "play":
        result = asyncio.run(play(argv[1]))
    else:
        result = asyncio.run(flush())
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
