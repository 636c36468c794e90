"""End to end through the real CLI, the real SDK and the emulator over TLS: the USER transcript of
spoken input is what was said (in-process `--emulate` and `agent-run emulate`), a scenario's
`when:` turns match speech, and AGENT_RUN_EMULATOR_ASR=none gives the scenario's text as before."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from emulate_process import EmulateProcess, exported

from tests.asr.asr_helpers import missing_words, needs_espeak, needs_whisper, spoken
from tests.e2e.e2e_helpers import ORDERS, ORDERS_SCENARIO, REPO, Finished, Run, base_env, silence, write_wav

pytestmark = [needs_whisper, needs_espeak]

PARCEL = "I would like to know where my parcel is"
TIME = "what time is it"
HOURS = "what are your opening hours"
# Turns matched by what was said: speech reaches the right one only if it was heard.
WHEN_SCENARIO = """\
turns:
  - when: parcel
    assistant:
      - say: Your parcel is on its way.
  - when: opening hours
    assistant:
      - say: We open at nine.
fallback:
  - say: Sorry, I did not catch that.
"""


@dataclass
class Outcomes:
    in_process: Finished
    switched_off: Finished
    served: Finished
    served_log: str
    matched: Finished


def question(path: Path, text: str) -> Path:
    import numpy as np

    pcm = np.frombuffer(spoken(text), dtype="<i2")
    return write_wav(path, [silence(0.4), pcm, silence(0.4)])


def agent_args(tmp: Path, name: str, wav: Path) -> tuple[list[str | Path], Path]:
    transcript = tmp / f"{name}.jsonl"
    return [ORDERS, "--input", wav, "--output", tmp / f"{name}.wav", "--transcript", transcript,
            "--idle-exit", "1"], transcript


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcomes]:
    tmp = tmp_path_factory.mktemp("asr")
    parcel, what_time = question(tmp / "parcel.wav", PARCEL), question(tmp / "time.wav", TIME)
    hours, scenario = question(tmp / "hours.wav", HOURS), tmp / "when.scenario.yaml"
    scenario.write_text(WHEN_SCENARIO)
    runs: list[Run] = []
    emulator = EmulateProcess(["--port", "0", "--time-limit", "30", "--asr", "whisper",
                               "--scenario", ORDERS_SCENARIO], tmp / "emulator.log", base_env())
    try:
        # All four overlap: each is mostly waiting for audio played in real time.
        args, transcript = agent_args(tmp, "in-process", parcel)
        runs.append(Run([*args, "--emulate", ORDERS_SCENARIO, "--time-limit", "30"], transcript=transcript,
                        env=base_env(AGENT_RUN_EMULATOR_ASR="whisper")))
        args, transcript = agent_args(tmp, "off", parcel)
        runs.append(Run([*args, "--emulate", ORDERS_SCENARIO, "--time-limit", "30"], transcript=transcript,
                        env=base_env(AGENT_RUN_EMULATOR_ASR="none")))
        args, transcript = agent_args(tmp, "served", what_time)
        runs.append(Run(args, transcript=transcript, env=base_env(**exported(emulator.wait_ready()))))
        args, transcript = agent_args(tmp, "matched", hours)
        runs.append(Run([*args, "--emulate", scenario, "--time-limit", "30"], transcript=transcript,
                        env=base_env(AGENT_RUN_EMULATOR_ASR="whisper")))
        in_process, switched_off, served, matched = (run.finish() for run in runs)
        emulator.stop()
        yield Outcomes(in_process, switched_off, served, emulator.text(), matched)
    finally:
        for run in runs:
            run.kill()
        emulator.stop()


def heard(done: Finished) -> list[str]:
    return [entry["text"] for entry in done.entries("user")]


def test_the_in_process_emulator_transcribes_what_was_said(outcomes: Outcomes) -> None:
    done = outcomes.in_process
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr
    said, = heard(done)
    assert not missing_words(said, "know where parcel"), done.describe()
    assert f"you:       {said}" in done.stdout
    # The scenario still answers (turns play in order): the order's tool ran after the USER entry.
    types = [entry["type"] for entry in done.transcript]
    assert types.index("user") < types.index("tool_call"), done.describe()
    assert "not transcribed" not in done.stderr


def test_agent_run_emulate_transcribes_for_any_client(outcomes: Outcomes) -> None:
    done = outcomes.served
    assert done.returncode == 0, f"{done.describe()}\n--- emulator\n{outcomes.served_log[-3000:]}"
    said, = heard(done)
    assert not missing_words(said, "what time"), done.describe()
    # The emulator's event log says what it heard and how long recognition took.
    assert any(line.endswith("s)") and "heard '" in line and " recognised in " in line
               for line in outcomes.served_log.splitlines()), outcomes.served_log[-3000:]


def test_when_turns_match_what_was_said(outcomes: Outcomes) -> None:
    done = outcomes.matched
    assert done.returncode == 0, done.describe()
    said, = heard(done)
    assert not missing_words(said, "opening hours"), done.describe()
    # The second turn answered (not the first, not the fallback): matched on the heard words.
    assert [entry["text"] for entry in done.entries("assistant")] == ["We open at nine."], done.describe()


def test_recognition_switched_off_plays_the_scenario_text(outcomes: Outcomes) -> None:
    done = outcomes.switched_off
    assert done.returncode == 0, done.describe()
    assert heard(done) == ["Where is my order 12345?"]


def test_an_unknown_recognizer_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "emulate", "--asr", "vosk"], cwd=REPO,
                          env=base_env(), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "argument --asr: invalid choice: 'vosk'" in done.stderr  # (the rest differs across Pythons)
    assert "Traceback" not in done.stderr
