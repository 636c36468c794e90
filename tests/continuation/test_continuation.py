"""Issue 5: conversations that outlive the stream and survive faults.

Each test runs a real conversation in-process: a WAV of several utterances, the real engine, the
real Bedrock SDK over TLS, and the emulator with a stream limit of a few seconds and injected
faults. The emulator's per-stream records show what the service really received.
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
from runner.conversation import Conversation
from runner.emulator.local import LocalEmulator
from runner.engine import RunOptions, run_agent
from runner.errors import TransportError

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
RATE = 16000
WORDS = ["one", "two", "three", "four", "five"]


pytestmark = pytest.mark.usefixtures("restore_environ")


@pytest.fixture(scope="module")
def conversation_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five utterances, each followed by 3 s of silence (room for the answer)."""
    utterances = [SAMPLES / "what_time_is_it.wav", SAMPLES / "thanks_bye.wav"]
    gap = bytes(int(3.0 * RATE) * 2)
    pcm = b"".join(read_wav(utterances[i % 2], RATE) + gap for i in range(len(WORDS)))
    path = tmp_path_factory.mktemp("audio") / "conversation.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm)
    return path


def write_agent(folder: Path, *, model: str = "amazon.nova-2-sonic-v1:0", rotate_after_s: float = 3,
                extra: str = "") -> Path:
    path = folder / "agent.yaml"
    path.write_text(f"""\
version: 1
name: continuation-test
description: a short-answer agent for stream continuation tests
model: {{id: {model}, region: us-east-1}}
voice: matthew
policy: simple
system_prompt: You answer with one word.
session: {{rotate_after_s: {rotate_after_s}}}
{extra}""")
    return path


def write_scenario(folder: Path, faults: dict[str, Any] | None = None) -> Path:
    turns = [{"user": f"turn {w}", "assistant": [{"say": f"{w.capitalize()}."}]} for w in WORDS]
    data: dict[str, Any] = {"turns": turns, "settings": {"speed": 8}}
    if faults:
        data["faults"] = faults
    path = folder / "scenario.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


class Observer:
    def __init__(self) -> None:
        self.emulator: LocalEmulator | None = None
        self.conversation: Conversation | None = None

    def emulator_started(self, emulator: LocalEmulator) -> None:
        self.emulator = emulator

    def conversation_finished(self, conversation: Conversation) -> None:
        self.conversation = conversation


def run(tmp_path: Path, agent: Path, wav: Path, *, scenario: Path, time_limit_s: float | None = 8,
        ) -> tuple[int, list[dict[str, Any]], Observer]:
    observer = Observer()
    transcript = tmp_path / "transcript.jsonl"
    options = RunOptions(input_file=wav, output_file=tmp_path / "out.wav", transcript=transcript,
                         emulate=True, scenario=scenario, emulator_time_limit_s=time_limit_s,
                         idle_exit_s=1.5, max_duration_s=60)

    async def main() -> int:
        async with asyncio.timeout(90):  # nothing may hang
            return await run_agent(load_agent(agent), options, Console(quiet=True), observer)

    code = asyncio.run(main())
    entries = [json.loads(line) for line in transcript.read_text().splitlines()]
    return code, entries, observer


def texts(entries: list[dict[str, Any]], kind: str) -> list[str]:
    return [e["text"] for e in entries if e["type"] == kind]


def sessions(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["type"] == "session" and e["event"] == event]


def assert_every_turn_once(entries: list[dict[str, Any]]) -> None:
    assert texts(entries, "user") == [f"turn {w}" for w in WORDS]
    assert texts(entries, "assistant") == [f"{w.capitalize()}." for w in WORDS]


def test_conversation_spans_several_streams_without_losing_a_turn_or_audio(
        tmp_path: Path, conversation_wav: Path) -> None:
    code, entries, seen = run(tmp_path, write_agent(tmp_path), conversation_wav,
                              scenario=write_scenario(tmp_path))
    assert code == 0
    assert_every_turn_once(entries)
    starts, ends = sessions(entries, "start"), sessions(entries, "end")
    assert len(starts) >= 4, "a 22 s conversation with rotate_after_s=3 must use several streams"
    assert [s["stream"] for s in starts] == list(range(1, len(starts) + 1))
    assert all(s["reason"] == "rotation" for s in starts[1:])
    assert sorted(e["stream"] for e in ends) == [s["stream"] for s in starts]
    assert not [e for e in ends if "error" in e], "proactive rotation must beat the 8 s stream limit"
    # Later streams were given the conversation so far as history.
    assert starts[-1]["history_messages"] >= 6
    assert seen.emulator is not None and seen.conversation is not None
    records = seen.emulator.handler.sessions
    assert len(records) == len(starts)
    assert all(r.error is None for r in records), [r.error for r in records]
    # No user audio lost across hand-overs: the service received every byte the runner sent,
    # none was dropped, and that covers the whole input file.
    received = sum(r.audio_bytes for r in records)
    assert received == seen.conversation.audio_bytes_sent
    assert seen.conversation.audio_bytes_dropped == 0
    assert received >= conversation_wav.stat().st_size - 44


def test_without_rotation_the_stream_limit_forces_a_reconnect_and_nothing_is_lost(
        tmp_path: Path, conversation_wav: Path) -> None:
    # rotate_after_s larger than the emulator's 6 s limit: the service ends the stream with
    # ModelTimeoutException and the conversation carries on in a new one.
    agent = write_agent(tmp_path, rotate_after_s=300)
    code, entries, _ = run(tmp_path, agent, conversation_wav, scenario=write_scenario(tmp_path),
                           time_limit_s=6)
    assert code == 0
    assert_every_turn_once(entries)
    errors = [e.get("error") for e in sessions(entries, "end")]
    assert "ModelTimeoutException" in errors
    reasons = [s["reason"] for s in sessions(entries, "start")]
    assert "reconnect after ModelTimeoutException" in reasons


@pytest.mark.parametrize(("faults", "error"), [
    ({"reset_after_events": 150}, "StreamReset"),
    ({"throttle_connects": 2}, "ThrottlingException"),
    ({"stream_error_at_turn": 2}, "ModelStreamErrorException"),
    ({"invalid_bytes_at_turn": 3}, "InvalidEventBytes"),
])
def test_each_fault_is_survived_with_the_conversation_intact(
        tmp_path: Path, conversation_wav: Path, faults: dict[str, Any], error: str) -> None:
    agent = write_agent(tmp_path, rotate_after_s=300)
    code, entries, seen = run(tmp_path, agent, conversation_wav, scenario=write_scenario(tmp_path, faults),
                              time_limit_s=None)
    assert code == 0
    assert_every_turn_once(entries)
    errors = [e.get("error") for e in sessions(entries, "end")]
    assert error in errors
    assert len(sessions(entries, "start")) >= 2
    assert seen.emulator is not None
    # The stream that finally served the conversation was given the history so far.
    assert all(r.error is None for r in seen.emulator.handler.sessions[-1:])


def test_a_validation_error_stops_cleanly_with_the_services_message(
        tmp_path: Path, conversation_wav: Path) -> None:
    # A template override that passes our schema but names a voice the service rejects.
    templates = tmp_path / "templates"
    templates.mkdir()
    builtin = (ROOT / "runner/protocol/templates/promptStart.json.j2").read_text()
    (templates / "promptStart.json.j2").write_text(
        builtin.replace("{{ voice_id | tojson }}", '"zed"'))
    agent = write_agent(tmp_path, rotate_after_s=300, extra="templates: templates\n")
    with pytest.raises(TransportError) as caught:
        run(tmp_path, agent, conversation_wav, scenario=write_scenario(tmp_path))
    assert caught.value.kind == "ValidationException"
    assert not caught.value.retryable
    assert "Received invalid id: 'zed'" in str(caught.value)
    entries = [json.loads(line) for line in (tmp_path / "transcript.jsonl").read_text().splitlines()]
    ends = sessions(entries, "end")
    assert len(ends) == 1 and ends[0]["error"] == "ValidationException"  # no reconnect attempts


def test_a_tool_result_whose_stream_died_reaches_the_new_stream_as_text(tmp_path: Path) -> None:
    (tmp_path / "slow_tools.py").write_text((ROOT / "tests/data/continuation/slow_tools.py").read_text())
    agent = write_agent(tmp_path, rotate_after_s=300, extra="""\
tools:
  - name: lookUp
    description: Looks something up (slowly).
    input_schema: {type: object, properties: {item: {type: string}}}
    handler: slow_tools:look_up
    timeout_s: 5
""")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(json.dumps({
        "turns": [{"user": "turn one", "assistant": [{"tool": "lookUp", "input": {"item": "order"}},
                                                     {"say": "It is {{ tool_result.status }}."}]},
                  {"user": "note", "assistant": [{"say": "Noted."}]}],
        "faults": {"reset_after_tool_use": True}}))
    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(read_wav(SAMPLES / "what_time_is_it.wav", RATE) + bytes(7 * RATE * 2))
    code, entries, seen = run(tmp_path, agent, wav, scenario=scenario, time_limit_s=None)
    assert code == 0
    assert texts(entries, "user") == ["turn one"]  # the runner's own texts are not user turns
    assert "It is found." in texts(entries, "assistant")
    calls = [e for e in entries if e["type"] == "tool_call"]
    results = [e for e in entries if e["type"] == "tool_result"]
    assert len(calls) == 2 and len(results) == 2  # asked on the reset stream, then again
    assert all(r["result"] == {"item": "order", "status": "found"} for r in results)
    assert seen.emulator is not None
    first, second = seen.emulator.handler.sessions[:2]
    assert first.ended == "reset" and first.tool_results == []
    # The new stream got a toolResult only for the call it issued itself ...
    assert [r.tool_use_id for r in second.tool_results] == [calls[1]["tool_use_id"]]
    # ... and the orphaned result as the user's text, never as a toolResult.
    assert any(t.startswith("(Result of the lookUp tool requested earlier") for t in second.user_turns)
    assert second.error is None
