"""Call control end to end: `agent-run AGENT --emulate SCENARIO` as a real subprocess, the real SDK
over TLS to the emulator, whose scenario calls the built-in tools by name.

Every run of the module starts before any is waited for (a run is paced in real time)."""

from __future__ import annotations

import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.e2e_helpers import Finished, Run, base_env

FIRST = "All right."
GOODBYE = "Thank you for calling, goodbye and have a wonderful day!"
NOVA2 = "amazon.nova-2-sonic-v1:0"
V1 = "amazon.nova-sonic-v1:0"
REPO = Path(__file__).resolve().parents[2]
HELLO_WAV = REPO / "samples" / "thanks_bye.wav"


def agent(folder: Path, name: str, *, model: str = NOVA2, session: str = "", tools: str = "",
          extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    text = (f"version: 1\nname: {name}\nmodel: {{id: {model}, region: us-east-1}}\nvoice: matthew\n"
            f"system_prompt: You are a helpful assistant.\n{extra}")
    if session:
        text += f"session:\n{session}"
    if tools:
        text += f"tools:\n{tools}"
    path.write_text(text, encoding="utf-8")
    return path


END_CALL_TOOL = """\
  - name: end_call
    description: End the call once you have said goodbye.
    input_schema: {type: object, properties: {reason: {type: string}}}
    handler: builtin:end_call
"""
TRANSFER_TOOL = """\
  - name: transfer_call
    description: Transfer the caller to a person.
    input_schema: {type: object, properties: {to: {type: string}}, required: [to]}
    handler: builtin:transfer
"""


def scenario(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def typed(args: list[Any], transcript: Path, lines: list[str]) -> Run:
    run = Run([*args, "--text", "--transcript", transcript], transcript=transcript, stdin=subprocess.PIPE,
              env=base_env())
    assert run.proc.stdin is not None
    run.proc.stdin.write("".join(f"{line}\n" for line in lines))
    run.proc.stdin.close()
    run.proc.stdin = None  # closed: communicate() must not flush it
    return run


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return wav.getnframes() / wav.getframerate()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("call_control")


@pytest.fixture(scope="module")
def runs(folder: Path) -> Iterator[dict[str, Run]]:
    tmp = folder
    # The model calls end_call, then still speaks (its answer to the tool result): that is played too.
    bye = scenario(tmp, "bye", f"""\
turns:
  - when: bye
    assistant:
      - say: "{FIRST}"
      - tool: end_call
        input: {{reason: the user said bye}}
      - say: "{GOODBYE}"
""")
    # The same words without the tool: the run ends by the idle exit, after all of them played.
    plain = scenario(tmp, "plain", f"""\
turns:
  - when: bye
    assistant: [{{say: "{FIRST}"}}, {{say: "{GOODBYE}"}}]
""")
    silence = scenario(tmp, "silence", """\
turns:
  - when: NUDGE
    assistant: [{say: "Are you still there?"}]
  - when: GOODBYE
    assistant: [{say: "I will hang up now. Goodbye!"}]
  - when: CLOSING
    assistant: [{say: "Our time is up. Goodbye!"}]
fallback: [{say: "Hello there."}]
""")
    transfer = scenario(tmp, "transfer", """\
turns:
  - when: human
    assistant:
      - tool: transfer_call
        input: {to: "+15551234567"}
      - say: "{{ tool_result.error }}"
""")
    end_call = agent(tmp, "ender", tools=END_CALL_TOOL)
    inactive = agent(tmp, "inactive", session="  inactivity: {nudge_after_s: 2, end_after_s: 2, "
                                              "nudge: 'NUDGE {{ who }}', goodbye: GOODBYE}\n",
                     extra="vars: {who: caller}\n")
    limited = agent(tmp, "limited", session="  max_duration_s: 3\n  closing_line: CLOSING now\n")
    long_limit = agent(tmp, "long_limit", session="  max_duration_s: 60\n")
    legacy = agent(tmp, "legacy", model=V1, session="  inactivity: {nudge_after_s: 1, end_after_s: 1}\n")
    transferring = agent(tmp, "transferring", tools=TRANSFER_TOOL)
    started = {
        "end_call": typed([end_call, "--emulate", bye, "--output", tmp / "end_call.wav", "--idle-exit", "30"],
                          tmp / "end_call.jsonl", ["bye"]),
        "plain": typed([end_call, "--emulate", plain, "--output", tmp / "plain.wav"],
                       tmp / "plain.jsonl", ["bye"]),
        "inactivity": typed([inactive, "--emulate", silence, "--mute", "--idle-exit", "60"],
                            tmp / "inactivity.jsonl", ["hi"]),
        "max_duration": typed([limited, "--emulate", silence, "--mute", "--idle-exit", "60"],
                              tmp / "max_duration.jsonl", ["hi"]),
        "cli_limit": typed([long_limit, "--emulate", silence, "--mute", "--idle-exit", "60", "--max-duration",
                            "3"], tmp / "cli_limit.jsonl", ["hi"]),
        "legacy": Run([legacy, "--emulate", silence, "--input", HELLO_WAV, "--mute", "--idle-exit", "60",
                       "--transcript", tmp / "legacy.jsonl"], transcript=tmp / "legacy.jsonl"),
        "transfer": typed([transferring, "--emulate", transfer, "--mute"], tmp / "transfer.jsonl",
                          ["get me a human"]),
    }
    yield started
    for run in started.values():
        run.kill()


def run_seconds(done: Finished) -> float:
    """From the first stream's start to the last stream's end, by the transcript."""
    sessions = done.entries("session")
    return float(sessions[-1]["ts"] - sessions[0]["ts"])


def finished(runs: dict[str, Run], name: str) -> Finished:
    done = runs[name].finish(timeout_s=90)
    assert done.returncode == 0, done.describe()
    return done


def test_end_call_ends_the_run_after_the_goodbye_has_played_in_full(runs: dict[str, Run],
                                                                    folder: Path) -> None:
    done = finished(runs, "end_call")
    tmp = folder
    kinds = [e["type"] for e in done.transcript]
    assert done.entries("call_ended") == [{"type": "call_ended", "ts": done.entries("call_ended")[0]["ts"],
                                           "reason": "end_call"}], done.describe()
    # Recorded in order: the tool call, the goodbye after its result, the end, the stream's end.
    assert [e["text"] for e in done.entries("assistant")] == [FIRST, GOODBYE], done.describe()
    last_said = max(i for i, k in enumerate(kinds) if k == "assistant")
    assert kinds.index("tool_call") < last_said < kinds.index("call_ended") \
        < max(i for i, k in enumerate(kinds) if k == "session"), done.describe()
    assert "call ended (the assistant ended it with end_call)" in done.stdout, done.describe()
    # Not by the idle exit (30 s): by the tool, well before.
    assert run_seconds(done) < 20, done.describe()
    # The whole goodbye was played: as long as when the run waits for it to end by itself.
    reference = finished(runs, "plain")
    assert not reference.entries("call_ended")
    full = wav_seconds(tmp / "plain.wav")
    assert full > 2.0
    assert wav_seconds(tmp / "end_call.wav") >= full - 0.05, done.describe()


def test_inactivity_nudges_says_goodbye_and_ends(runs: dict[str, Run]) -> None:
    done = finished(runs, "inactivity")
    said = [(e["event"], e["text"]) for e in done.entries("call_control")]
    assert said == [("nudge", "NUDGE caller"), ("goodbye", "GOODBYE")], done.describe()
    assistant = [e["text"] for e in done.entries("assistant")]
    assert assistant == ["Hello there.", "Are you still there?", "I will hang up now. Goodbye!"], \
        done.describe()
    # The nudge and goodbye are the runner's, not the user's.
    assert [e["text"] for e in done.entries("user")] == ["hi"], done.describe()
    ended = done.entries("call_ended")
    assert [e["reason"] for e in ended] == ["inactivity"], done.describe()
    nudge_at = done.entries("call_control")[0]["ts"]
    hello_at = done.entries("assistant")[0]["ts"]
    assert nudge_at - hello_at >= 2.0, done.describe()  # two quiet seconds at least (after playback)
    assert ended[0]["ts"] > done.entries("assistant")[-1]["ts"]
    assert run_seconds(done) < 30, done.describe()


def test_max_duration_says_the_closing_line_then_ends(runs: dict[str, Run]) -> None:
    done = finished(runs, "max_duration")
    assert [(e["event"], e["text"]) for e in done.entries("call_control")] == [("closing", "CLOSING now")], \
        done.describe()
    assert done.entries("assistant")[-1]["text"] == "Our time is up. Goodbye!", done.describe()
    assert [e["reason"] for e in done.entries("call_ended")] == ["max_duration"], done.describe()
    assert "session.max_duration_s reached" in done.stdout


def test_the_smaller_limit_wins_the_command_lines_stops_at_once(runs: dict[str, Run]) -> None:
    done = finished(runs, "cli_limit")
    assert not done.entries("call_ended") and not done.entries("call_control"), done.describe()
    assert "reached --max-duration (3 s)" in done.stdout, done.describe()
    assert run_seconds(done) < 6, done.describe()


def test_without_text_input_the_call_ends_silently_after_both_delays(runs: dict[str, Run]) -> None:
    done = finished(runs, "legacy")
    assert not done.entries("call_control"), done.describe()
    assert [e["reason"] for e in done.entries("call_ended")] == ["inactivity"], done.describe()


def test_transfer_outside_a_phone_call_is_an_error_result_the_model_can_speak_about(
        runs: dict[str, Run]) -> None:
    done = finished(runs, "transfer")
    results = done.entries("tool_result")
    assert len(results) == 1 and "only works on a phone call" in results[0]["error"], done.describe()
    assert "only works on a phone call" in done.entries("assistant")[0]["text"], done.describe()
    assert not done.entries("call_ended"), done.describe()
