"""Record and replay end to end: `agent-run AGENT --record DIR` (real CLI, real SDK over TLS to the
in-process emulator), then `agent-run emulate --replay DIR` serving that recording to the same run
(it must go the same way) and to a run whose tool now answers differently (it must fail, naming the
first difference)."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import (
    ORDERS,
    ORDERS_SCENARIO,
    REPO,
    SAMPLES,
    SPEECH_DBFS,
    Finished,
    Run,
    base_env,
    dbfs,
    read_jsonl,
    read_output,
    sample,
    silence,
    write_wav,
)
from emulate_process import EmulateProcess, exported

QUESTION = SAMPLES / "where_is_my_order.wav"
# Values no recording may contain: set in the recording run's environment.
ENV_SECRET = "envSecretKeyValue/0123456789abcdefghijKLMN"
SESSION_TOKEN = "SessionTokenValue+FwoGZXIvYXdzEJr0123456789"
CHANGED_TOOL = '''\
def track_order(orderId: str, requestNotifications: bool = False) -> dict:
    return {"orderNumber": orderId, "orderStatus": "Lost"}
'''


@dataclass
class Recorded:
    folder: Path
    done: Finished
    emulator_keys: dict[str, str]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.folder / "events.jsonl").read_text().splitlines()]


def run_args(agent: Path, *extra: str | Path, question: Path = QUESTION) -> list[str | Path]:
    return [agent, "--input", question, "--idle-exit", "1", *extra]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    tmp = tmp_path_factory.mktemp("record")
    state = tmp / "emulator-state"
    env = base_env(AGENT_RUN_EMULATOR_DIR=str(state), AWS_SECRET_ACCESS_KEY=ENV_SECRET,
                   AWS_SESSION_TOKEN=SESSION_TOKEN)
    run = Run(run_args(ORDERS, "--emulate", ORDERS_SCENARIO, "--time-limit", "30", "--output",
                       tmp / "answer.wav", "--record", tmp / "rec"), env=env)
    try:
        done = run.finish()
        keys = json.loads((state / "credentials.json").read_text()) if state.exists() else {}
        yield Recorded(tmp / "rec", done, keys)
    finally:
        run.kill()


@dataclass
class Replayed:
    done: Finished
    emulator_log: str


def replay(recording: Path, agent: Path, tmp: Path, question: Path = QUESTION) -> Iterator[Replayed]:
    args = run_args(agent, "--output", tmp / "answer.wav", question=question)
    with replay_run(recording, args, tmp) as replayed:
        yield replayed


@contextlib.contextmanager
def replay_run(recording: Path, args: list[str | Path], tmp: Path) -> Iterator[Replayed]:
    """`agent-run emulate --replay DIR`, then `agent-run ARGS` pointed at it by its exports only."""
    tmp.mkdir(exist_ok=True)
    emulator = EmulateProcess(["--port", "0", "--replay", recording], tmp / "emulator.log", base_env())
    client: Run | None = None
    try:
        lines = emulator.wait_ready()
        transcript = tmp / "t.jsonl"
        client = Run([*args, "--transcript", transcript], transcript=transcript,
                     env=base_env(**exported(lines)))
        done = client.finish()
        emulator.stop()
        yield Replayed(done, emulator.log.read_text())
    finally:
        if client is not None:
            client.kill()
        emulator.stop()


@pytest.fixture(scope="module")
def replayed_same(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    assert recorded.done.returncode == 0, recorded.done.describe()
    # The user's audio as the recording kept it, as one would replay a microphone session.
    yield from replay(recorded.folder, ORDERS, tmp_path_factory.mktemp("same"),
                      question=recorded.folder / "user.wav")


@pytest.fixture(scope="module")
def replayed_changed(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    """The same agent, but its trackOrderTool handler now says the order is lost."""
    assert recorded.done.returncode == 0, recorded.done.describe()
    tmp = tmp_path_factory.mktemp("changed")
    agent = tmp / "orders.yaml"
    agent.write_text(ORDERS.read_text().replace("orders_tools:track_order", "changed_tools:track_order"))
    shutil.copy(REPO / "agents" / "orders_tools.py", tmp / "orders_tools.py")
    (tmp / "changed_tools.py").write_text(CHANGED_TOOL)
    yield from replay(recorded.folder, agent, tmp)


# -- the recording ------------------------------------------------------------------------------

def test_the_run_writes_events_wav_transcript_and_metadata(recorded: Recorded) -> None:
    assert recorded.done.returncode == 0, recorded.done.describe()
    names = sorted(p.name for p in recorded.folder.iterdir())
    assert names == ["conversation.wav", "events.jsonl", "recording.json", "transcript.jsonl", "user.wav"]
    meta = json.loads((recorded.folder / "recording.json").read_text())
    assert (meta["input_sample_rate"], meta["output_sample_rate"], meta["agent"]) == (16000, 24000, "orders")


def test_events_carry_time_direction_stream_and_the_tool_round_trip(recorded: Recorded) -> None:
    events = recorded.events()
    times = [e["t"] for e in events]
    assert times == sorted(times) and times[0] >= 0
    assert {e["stream"] for e in events} == {1}
    named = [(e["direction"], next(iter(e["event"]["event"]))) for e in events if "event" in e]
    assert named[0] == ("in", "sessionStart")
    use = next(e["event"]["event"]["toolUse"] for e in events
               if e["direction"] == "out" and "toolUse" in e.get("event", {}).get("event", {}))
    assert use["toolName"] == "trackOrderTool" and json.loads(use["content"]) == {"orderId": "12345"}
    result = next(e["event"]["event"]["toolResult"] for e in events
                  if e["direction"] == "in" and "toolResult" in e.get("event", {}).get("event", {}))
    assert json.loads(result["content"])["orderNumber"] == "12345"
    assert named.index(("out", "toolUse")) < named.index(("in", "toolResult"))
    markers = [(e["direction"], k) for e in events for k in ("accepted", "end") if e.get(k) is True]
    assert markers == [("out", "accepted"), ("in", "end"), ("out", "end")], markers


def test_input_audio_is_counted_and_output_audio_kept_inline(recorded: Recorded) -> None:
    events = recorded.events()
    inputs = [e for e in events if "audioInput" in e.get("event", {}).get("event", {})]
    outputs = [e["event"]["event"]["audioOutput"] for e in events
               if "audioOutput" in e.get("event", {}).get("event", {})]
    assert inputs and all(e["event"]["event"]["audioInput"]["content"] == "" for e in inputs)
    sent_s = sum(e["audio_bytes"] for e in inputs) / 32000
    assert 4.0 < sent_s < 30.0, sent_s  # the question (~3 s), then silence until the idle exit
    said_s = sum(len(base64.b64decode(o["content"])) for o in outputs) / 48000
    assert 3.0 < said_s < 15.0, said_s


def test_the_stereo_wav_has_the_user_left_and_the_assistant_right(recorded: Recorded) -> None:
    wav = read_output(recorded.folder / "conversation.wav")
    assert (wav.channels, wav.rate) == (2, 24000)
    left, right = wav.samples.reshape(-1, 2).T
    events = recorded.events()
    first_in = next(e["t"] for e in events if "audioInput" in e.get("event", {}).get("event", {}))
    first_out = next(e["t"] for e in events if "audioOutput" in e.get("event", {}).get("event", {}))
    # Where the question is loud in the sample file is where it must be loud on the left.
    question = sample(QUESTION.name, 24000)
    loud = [i for i in range(0, len(question) - 2400, 2400) if dbfs(question[i:i + 2400]) > SPEECH_DBFS]
    start, end = round(first_in * 24000) + loud[0], round(first_in * 24000) + loud[-1] + 2400
    assert dbfs(left[start:end]) > SPEECH_DBFS - 5, dbfs(left[start:end])
    assert dbfs(right[start:end]) < -60, dbfs(right[start:end])
    answer = slice(round(first_out * 24000), round((first_out + 2.0) * 24000))
    assert dbfs(right[answer]) > SPEECH_DBFS - 5, dbfs(right[answer])
    assert dbfs(left[answer]) < -60, dbfs(left[answer])
    assert first_out > first_in + loud[-1] / 24000  # the assistant answers after the question


def test_user_wav_is_the_audio_sent_byte_for_byte(recorded: Recorded) -> None:
    user = read_output(recorded.folder / "user.wav")
    assert (user.channels, user.rate) == (1, 16000)
    sent = sum(e.get("audio_bytes", 0) for e in recorded.events())
    assert len(user.samples) * 2 == sent
    question = sample(QUESTION.name)
    # The whole file from its first sample (the microphone loop reads nothing before a session
    # exists to take it), then silence.
    assert np.array_equal(user.samples[:len(question)], question), "user.wav is not the question as sent"
    assert not user.samples[len(question):].any()


def test_the_transcript_is_in_the_recording(recorded: Recorded) -> None:
    entries = read_jsonl(recorded.folder / "transcript.jsonl")
    assert [e["text"] for e in entries if e["type"] == "user"] == ["Where is my order 12345?"]
    assert any(e["type"] == "tool_call" and e["name"] == "trackOrderTool" for e in entries)
    assert any(e["type"] == "assistant" and "12345" in e["text"] for e in entries)


def test_no_credentials_anywhere_in_the_recording(recorded: Recorded) -> None:
    keys = recorded.emulator_keys
    assert keys, "the emulator's state folder has no credentials.json"
    secrets = [v for v in keys.values() if isinstance(v, str) and len(v) >= 16]
    assert len(secrets) >= 2, keys
    secrets += [ENV_SECRET, SESSION_TOKEN]
    for path in recorded.folder.iterdir():
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{path.name} holds a credential ({secret[:6]}…)"


# -- replay -------------------------------------------------------------------------------------

def _said(done: Finished) -> list[str]:
    return [e["text"] for e in done.entries("assistant")]


def test_replay_plays_the_same_conversation(recorded: Recorded, replayed_same: Replayed) -> None:
    done = replayed_same.done
    assert done.returncode == 0, done.describe() + "\n--- emulator\n" + replayed_same.emulator_log
    original = read_jsonl(recorded.folder / "transcript.jsonl")
    calls = [(e["name"], e["input"]) for e in done.entries("tool_call")]
    assert calls == [(e["name"], e["input"]) for e in original if e["type"] == "tool_call"]
    assert _said(done) == [e["text"] for e in original if e["type"] == "assistant"]
    assert "# replay:" not in replayed_same.emulator_log


def test_replay_names_the_first_difference_and_fails_the_run(replayed_changed: Replayed) -> None:
    done = replayed_changed.done
    assert done.returncode == 1, done.describe()
    assert "Traceback" not in done.stderr
    message = "(toolResult): at toolResult.content.orderStatus: expected "
    assert message in done.stderr and "got 'Lost'" in done.stderr, done.stderr
    assert "agent-run: error: ValidationException: replay: stream 1, input event #" in done.stderr
    line = next(x for x in replayed_changed.emulator_log.splitlines() if x.startswith("# replay:"))
    assert message in line and line.endswith("got 'Lost'"), line
    # The model's side stopped at the difference: the recorded answer after the tool never came.
    assert not any("12345 is" in text for text in _said(done)), _said(done)


def test_a_changed_system_prompt_is_the_first_difference(recorded: Recorded, tmp_path: Path) -> None:
    assert recorded.done.returncode == 0, recorded.done.describe()
    agent = tmp_path / "orders.yaml"
    agent.write_text(ORDERS.read_text().replace("Keep your responses short", "Keep your responses long"))
    shutil.copy(REPO / "agents" / "orders_tools.py", tmp_path / "orders_tools.py")
    with replay_run(recorded.folder, run_args(agent, "--output", tmp_path / "a.wav"), tmp_path) as replayed:
        done = replayed.done
    assert done.returncode == 1, done.describe()
    expected = ("replay: stream 1, input event #4 (textInput): at textInput.content: expected "
                "…'Keep your responses short, generally two or\\nthree sentences for chatty'…, "
                "got …'Keep your responses long, generally two or\\nthree sentences for chatty '…")
    assert expected in done.stderr, done.stderr
    assert done.elapsed_s < 20  # refused at the system prompt, long before the question is played


# -- bad folders, broken disks ------------------------------------------------------------------

def test_a_file_as_the_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    done = Run([ORDERS, "--emulate", "--input", QUESTION, "--record", taken]).finish(timeout_s=30)
    assert done.returncode == 1
    assert f"agent-run: error: --record {taken}: not a folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "emulator:" not in done.stdout
    assert taken.read_text() == "not a folder"


def test_a_full_disk_ends_the_run_with_the_error(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "events.jsonl").symlink_to("/dev/full")  # every write: No space left on device
    done = Run([ORDERS, "--emulate", ORDERS_SCENARIO, "--input", QUESTION, "--output", tmp_path / "a.wav",
                "--record", folder]).finish(timeout_s=30)
    assert done.returncode == 1, done.describe()
    events = folder / "events.jsonl"
    expected = f"agent-run: error: cannot write the recording {events}: No space left on device"
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert done.elapsed_s < 15, done.elapsed_s
    wav = read_output(folder / "conversation.wav")  # the WAV stays valid
    assert wav.channels == 2


def test_replay_of_a_folder_without_a_recording_is_a_clear_error(tmp_path: Path) -> None:
    emulator = EmulateProcess(["--replay", tmp_path], tmp_path / "log", base_env())
    assert emulator.proc.wait(timeout=30) == 1
    emulator.stop()
    text = emulator.text()
    assert f"agent-run: error: --replay {tmp_path}: cannot read events.jsonl" in text, text
    assert "Traceback" not in text


# -- a conversation over several streams --------------------------------------------------------

ROTATING_AGENT = """\
version: 1
name: rotating
description: a short-answer agent that hands over to a new stream every 3 seconds
model: {id: amazon.nova-2-sonic-v1:0, region: us-east-1}
voice: matthew
policy: simple
system_prompt: You answer with one word.
session: {rotate_after_s: 3}
"""
ROTATING_SCENARIO = {"settings": {"speed": 8},
                     "turns": [{"user": f"turn {w}", "assistant": [{"say": f"{w.capitalize()}."}]}
                               for w in ("one", "two", "three")]}


def test_a_recording_over_several_streams_replays_stream_by_stream(tmp_path: Path) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(ROTATING_AGENT)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(json.dumps(ROTATING_SCENARIO))
    question = sample("what_time_is_it.wav")
    wav = write_wav(tmp_path / "three.wav", [question, silence(3.0)] * 3)
    args: list[str | Path] = [agent, "--input", wav, "--idle-exit", "1.5", "--output", tmp_path / "a.wav"]
    first = tmp_path / "first.jsonl"
    done = Run([*args, "--emulate", scenario, "--record", tmp_path / "rec", "--transcript", first],
               transcript=first).finish(timeout_s=90)
    assert done.returncode == 0, done.describe()
    opened = [e for e in done.transcript if e["type"] == "session" and e["event"] == "start"]
    assert len(opened) >= 2, done.describe()  # the recording really spans several streams
    streams = {json.loads(x)["stream"] for x in (tmp_path / "rec" / "events.jsonl").read_text().splitlines()}
    assert streams == set(range(1, len(opened) + 1))
    # The recording's transcript is a copy of --transcript.
    assert read_jsonl(tmp_path / "rec" / "transcript.jsonl") == done.transcript

    with replay_run(tmp_path / "rec", args, tmp_path / "replay") as replayed:
        again = replayed.done
    assert again.returncode == 0, again.describe() + "\n--- emulator\n" + replayed.emulator_log
    assert [e["text"] for e in again.entries("assistant")] == ["One.", "Two.", "Three."]
    assert len([e for e in again.transcript if e["type"] == "session" and e["event"] == "start"]) \
        == len(opened)
    assert "# replay:" not in replayed.emulator_log
