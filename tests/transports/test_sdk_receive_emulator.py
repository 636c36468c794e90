"""The receive fast path end to end: runner conversations over the real SDK (awscrt, HTTP/2, TLS)
against the emulator, with and without injected faults.

Every `chunk` event is decoded by FastChunkReceiver; the SDK's receiver only sees the end of each
stream and the fault events (a ModelStreamErrorException event, a corrupt frame), and the runner
reports those exactly as with the fast path off.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path
from typing import Any

import pytest

from runner.audio.wav import read_wav
from runner.config.loader import load_agent
from runner.console import Console
from runner.engine import RunOptions, run_agent
from runner.transports import bedrock
from runner.transports.sdk_receive import FastChunkReceiver

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000
WORDS = ["one", "two", "three"]

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("restore_environ")]


type Run = tuple[int, list[dict[str, Any]], list[FastChunkReceiver]]


def conversation(tmp_path: Path, faults: dict[str, Any], *, fast: bool,
                 monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("AGENT_RUN_EMULATOR_ASR", "none")  # the scenario's `user:` text is heard
    receivers: list[FastChunkReceiver] = []
    attach = bedrock.attach_receiver

    async def attach_counted(receiver: Any, chunk_payload: Any) -> FastChunkReceiver | None:
        found = await attach(receiver, chunk_payload) if fast else None
        if found is not None:
            receivers.append(found)
        return found

    monkeypatch.setattr(bedrock, "attach_receiver", attach_counted)
    folder = tmp_path / ("fast" if fast else "sdk")
    folder.mkdir()
    wav = folder / "in.wav"
    speech = read_wav(ROOT / "samples" / "what_time_is_it.wav", RATE)
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(speech + bytes(3 * RATE * 2) for _ in WORDS))
    turns = [{"user": f"turn {w}", "assistant": [{"say": f"{w.capitalize()}."}]} for w in WORDS]
    scenario = folder / "scenario.yaml"
    scenario.write_text(json.dumps({"turns": turns, "settings": {"speed": 8}, "faults": faults}))
    agent = folder / "agent.yaml"
    agent.write_text("""\
version: 1
name: fast-receive-test
description: receives every output event through the SDK receive fast path
model: {id: amazon.nova-2-sonic-v1:0, region: us-east-1}
voice: matthew
policy: simple
system_prompt: You answer with one word.
""")
    transcript = folder / "t.jsonl"
    options = RunOptions(input_file=wav, output_file=folder / "out.wav", transcript=transcript,
                         emulate=True, scenario=scenario, idle_exit_s=1.5, max_duration_s=60)

    async def main() -> int:
        async with asyncio.timeout(90):
            return await run_agent(load_agent(agent), options, Console(quiet=True))

    code = asyncio.run(main())
    return code, [json.loads(line) for line in transcript.read_text().splitlines()], receivers


def summary(entries: list[dict[str, Any]]) -> tuple[list[str], list[str], list[Any]]:
    return ([e["text"] for e in entries if e["type"] == "user"],
            [e["text"] for e in entries if e["type"] == "assistant"],
            [e.get("error") for e in entries if e["type"] == "session" and e["event"] == "end"])


@pytest.mark.parametrize("faults", [
    {}, {"stream_error_at_turn": 2}, {"invalid_bytes_at_turn": 2},
], ids=["clean", "stream-error", "invalid-bytes"])
def test_a_conversation_receives_through_the_fast_path_and_faults_read_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults: dict[str, Any]) -> None:
    code, entries, receivers = conversation(tmp_path, faults, fast=True, monkeypatch=monkeypatch)
    sdk_code, sdk_entries, none = conversation(tmp_path, faults, fast=False, monkeypatch=monkeypatch)
    assert not none
    assert (code, summary(entries)) == (sdk_code, summary(sdk_entries))
    assert summary(entries)[:2] == ([f"turn {w}" for w in WORDS], [f"{w.capitalize()}." for w in WORDS])
    assert receivers and sum(r.fast_events for r in receivers) > 50
    if faults:  # the fault's stream handed its fault event (and the rest) to the SDK's receiver
        assert any(r.handed_over for r in receivers)
        assert len(summary(entries)[2]) >= 2
