"""The send fast path end to end: a runner conversation over the real SDK (awscrt, HTTP/2, TLS)
against the in-process emulator, which verifies every chunk signature.

Every event the conversation sends goes through FastChunkSender (none through the SDK's own
publisher send), the emulator verified exactly those frames plus each stream's final empty frame
(signed by the SDK's own close on the chain the fast path advanced), and the turn was understood.
"""

from __future__ import annotations

import asyncio
import json
import os
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from smithy_aws_event_stream.aio import AWSEventPublisher

from runner.audio.wav import read_wav
from runner.config.loader import load_agent
from runner.console import Console
from runner.emulator.local import local_emulator
from runner.engine import RunOptions, run_agent
from runner.transports.sdk_send import FastChunkSender

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("restore_environ")]


def test_a_conversation_goes_through_the_fast_path_with_verified_signatures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_RUN_EMULATOR_ASR", "none")  # the scenario's `user:` text is heard
    sends = {"fast": 0, "sdk": 0}
    # Per Nova event type, the fast path's events written straight to the HTTP/2 stream (crt.py's
    # write_nowait) and those that went through smithy's body provider.
    direct: Counter[str] = Counter()
    via_provider: Counter[str] = Counter()
    fast_send, sdk_send = FastChunkSender.send, AWSEventPublisher.send

    async def counted_fast(self: FastChunkSender, payload: bytes) -> None:
        sends["fast"] += 1
        before = self.direct_writes
        await fast_send(self, payload)
        kind = next(iter(json.loads(payload)["event"]))
        (direct if self.direct_writes > before else via_provider)[kind] += 1

    async def counted_sdk(self: Any, event: Any) -> None:
        sends["sdk"] += 1
        await sdk_send(self, event)

    monkeypatch.setattr(FastChunkSender, "send", counted_fast)
    monkeypatch.setattr(AWSEventPublisher, "send", counted_sdk)

    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(read_wav(ROOT / "samples" / "what_time_is_it.wav", RATE) + bytes(2 * RATE * 2))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(json.dumps({"turns": [
        {"user": "What time is it?", "assistant": [{"say": "It is noon."}]}]}))
    transcript = tmp_path / "t.jsonl"
    agent = tmp_path / "agent.yaml"

    async def main() -> tuple[int, Any]:
        async with local_emulator(scenario) as emulator:
            os.environ.update(emulator.env())
            agent.write_text(f"""\
version: 1
name: fast-send-test
description: sends every event through the SDK send fast path
model: {{id: amazon.nova-2-sonic-v1:0, region: us-east-1, endpoint: "{emulator.endpoint}"}}
voice: matthew
policy: simple
system_prompt: Answer briefly.
""")
            options = RunOptions(input_file=wav, output_file=tmp_path / "out.wav", transcript=transcript,
                                 idle_exit_s=1.5, max_duration_s=30)
            async with asyncio.timeout(60):
                code = await run_agent(load_agent(agent), options, Console(quiet=True))
            return code, emulator.server.stats()

    code, stats = asyncio.run(main())
    assert code == 0
    entries = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert [e["text"] for e in entries if e["type"] == "user"] == ["What time is it?"]
    assert any(e["type"] == "assistant" and "noon" in e["text"] for e in entries), entries
    assert sends["sdk"] == 0 and sends["fast"] > 100  # ~4 s of 32 ms chunks, all on the fast path
    # Every audio event went straight to the HTTP/2 stream (the first events of a stream may be
    # sent before its body writer has started, and so through the provider).
    assert direct["audioInput"] > 100 and via_provider["audioInput"] == 0, (direct, via_provider)
    assert direct.total() + via_provider.total() == sends["fast"]
    assert stats.streams_total >= 1
    # Every frame verified: the fast path's, and one final empty frame per stream.
    assert sends["fast"] <= stats.chunk_signatures_verified <= sends["fast"] + stats.streams_total
    assert stats.chunk_signatures_verified - sends["fast"] >= 1  # the SDK's close, on our chain
