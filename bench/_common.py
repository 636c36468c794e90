"""Shared helpers of the bench scripts: robust summaries, CPU sampling, Nova input events, SDK setup.

Figures on a shared 2-core machine are noisy, so every bench repeats its measurement and reports
the median with the spread (min-max) rather than one number.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
NOVA2 = "amazon.nova-2-sonic-v1:0"
PROMPT = "bench-prompt"
AUDIO_CONTENT = "bench-audio"
IN_RATE = 16_000
OUT_RATE = 24_000
CHUNK_BYTES = 1024  # 32 ms of 16 kHz 16-bit mono
EVENTS_PER_SECOND = 31.25


# -- summaries ------------------------------------------------------------------------------------

def spread(values: Sequence[float], scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
    """'median (min-max, n=N)' of `values` multiplied by `scale`."""
    v = sorted(x * scale for x in values)
    if not v:
        return "n/a"
    med = statistics.median(v)
    return f"{med:.{digits}f}{unit} (min {v[0]:.{digits}f}, max {v[-1]:.{digits}f}, n={len(v)})"


def pct(values: Sequence[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def dist(values: Sequence[float], scale: float = 1e3, unit: str = " ms", digits: int = 2) -> str:
    """Median, p90, max and count of a latency distribution (seconds in, ms out by default)."""
    if not values:
        return "n/a"
    return (f"median {statistics.median(values) * scale:.{digits}f}{unit}, "
            f"p90 {pct(values, 0.9) * scale:.{digits}f}{unit}, max {max(values) * scale:.{digits}f}{unit} "
            f"(n={len(values)})")


class CpuSampler:
    """Samples this process's CPU time (all threads) against the system-wide monotonic clock.

    CLOCK_MONOTONIC is shared by every process on Linux, so a child process can report the
    window it was busy in, and `cpu(t0, t1)` gives this process's CPU seconds in that window.
    """

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self.max_loop_lag = 0.0
        self._lags: list[tuple[float, float]] = []

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            self.samples.append((before, time.process_time()))
            await asyncio.sleep(self.period_s)
            # How late the loop woke us: a direct measure of how busy the event loop is.
            lag = time.monotonic() - before - self.period_s
            self._lags.append((before, lag))

    def _at(self, t: float) -> float:
        s = self.samples
        lo, hi = 0, len(s) - 1
        if t <= s[0][0]:
            return s[0][1]
        if t >= s[-1][0]:
            return s[-1][1]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if s[mid][0] <= t:
                lo = mid
            else:
                hi = mid
        (t0, c0), (t1, c1) = s[lo], s[hi]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0)

    def cpu(self, t0: float, t1: float) -> float:
        return self._at(t1) - self._at(t0)

    def loop_lag(self, t0: float, t1: float) -> float:
        return max((lag for t, lag in self._lags if t0 <= t <= t1), default=0.0)


# -- Nova input events (what any Nova Sonic client sends) -----------------------------------------

def ev(name: str, **body: Any) -> bytes:
    return json.dumps({"event": {name: body}}).encode()


def opening(model_voice: str = "matthew") -> list[bytes]:
    """sessionStart, promptStart, the SYSTEM block and the open USER audio block."""
    return [
        ev("sessionStart", inferenceConfiguration={"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}),
        ev("promptStart", promptName=PROMPT, textOutputConfiguration={"mediaType": "text/plain"},
           audioOutputConfiguration={"mediaType": "audio/lpcm", "sampleRateHertz": OUT_RATE,
                                     "sampleSizeBits": 16, "channelCount": 1, "voiceId": model_voice,
                                     "encoding": "base64", "audioType": "SPEECH"}),
        *text_block("sys", "SYSTEM", "You are a benchmark.", interactive=False),
        ev("contentStart", promptName=PROMPT, contentName=AUDIO_CONTENT, type="AUDIO", interactive=True,
           role="USER", audioInputConfiguration={
               "mediaType": "audio/lpcm", "sampleRateHertz": IN_RATE, "sampleSizeBits": 16,
               "channelCount": 1, "audioType": "SPEECH", "encoding": "base64"}),
    ]


def text_block(name: str, role: str, text: str, *, interactive: bool) -> list[bytes]:
    return [ev("contentStart", promptName=PROMPT, contentName=name, type="TEXT", interactive=interactive,
               role=role, textInputConfiguration={"mediaType": "text/plain"}),
            ev("textInput", promptName=PROMPT, contentName=name, content=text),
            ev("contentEnd", promptName=PROMPT, contentName=name)]


def audio_input(pcm: bytes) -> bytes:
    return ev("audioInput", promptName=PROMPT, contentName=AUDIO_CONTENT,
              content=base64.b64encode(pcm).decode())


def closing() -> list[bytes]:
    return [ev("contentEnd", promptName=PROMPT, contentName=AUDIO_CONTENT),
            ev("promptEnd", promptName=PROMPT), ev("sessionEnd")]


def sample_pcm(name: str = "where_is_my_order.wav", rate: int = IN_RATE) -> bytes:
    from runner.audio.wav import read_wav

    return read_wav(SAMPLES / name, rate)


# -- the real SDK client ----------------------------------------------------------------------------

async def sdk_client() -> Any:
    """An AsyncBedrockRuntimeClient configured from the environment (the emulator's exports)."""
    from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
    from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
    from smithy_http.aio.crt import AWSCRTHTTPClient

    # awscrt reports harmless "never retrieved" errors at stream shutdown.
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
    config = await AsyncBedrockRuntimeConfig.resolve(
        transport=AWSCRTHTTPClient(),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    return AsyncBedrockRuntimeClient(config=config)


def chunk(payload: bytes) -> Any:
    from aws_sdk_bedrock_runtime import models

    return models.InvokeModelWithBidirectionalStreamInputChunk(
        value=models.BidirectionalInputPayloadPart(bytes_=payload))


async def open_sdk_stream(client: Any, model_id: str) -> Any:
    from aws_sdk_bedrock_runtime import models

    operation = models.InvokeModelWithBidirectionalStreamOperationInput(model_id=model_id)
    return await client.invoke_model_with_bidirectional_stream(operation)
