"""Issue 13: outputs never destroy the run's own files, and are not emptied by a run that fails to start.

`--output` and `--transcript` naming the agent file, an event template override, a tool's module
or the emulator's scenario (directly, through a symlink or a hard link) are refused before
anything is written, and those files stay intact. An existing `--output` WAV is replaced only
when the assistant's first audio arrives, so a run that fails at start (no credentials, an
endpoint that cannot be reached) leaves it as it was; the transcript is only ever appended to.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import DATA, SAMPLES, Run, base_env, read_output, silence, speech, write_wav

QUESTION = SAMPLES / "what_time_is_it.wav"
LIMIT_S = 30


def agent_folder(tmp_path: Path) -> Path:
    """faulty.yaml, its tool module and scenario, plus an event template override, in one folder."""
    folder = tmp_path / "agent"
    folder.mkdir()
    for name in ("faulty.yaml", "faulty_tools.py", "faulty_a.scenario.yaml"):
        shutil.copy(DATA / name, folder / name)
    (folder / "tpl").mkdir()
    builtin = Path(__file__).resolve().parents[2] / "runner/protocol/templates/sessionEnd.json.j2"
    shutil.copy(builtin, folder / "tpl" / "sessionEnd.json.j2")
    agent = folder / "faulty.yaml"
    agent.write_text(agent.read_text() + "templates: tpl\n")
    return folder


TARGETS = {  # what a mistaken output names -> the flag's wording of it in the error
    "faulty.yaml": "the agent file",
    "tpl/sessionEnd.json.j2": "the event template",
    "faulty_tools.py": "the module of tool slowTool",
    "faulty_a.scenario.yaml": "the --emulate scenario",
}


# Every target in every spelling as --output; --transcript goes through the same check (one
# spelling each keeps the CLI runs few).
CASES = [(target, spelling, "--output") for target in TARGETS for spelling in ("same", "symlink", "hardlink")]
CASES += [(target, "hardlink", "--transcript") for target in TARGETS]


@pytest.mark.parametrize(("target", "spelling", "flag"), CASES)
def test_an_output_naming_a_file_the_run_reads_is_refused_and_the_file_kept(
        tmp_path: Path, start_run: Callable[..., Run], target: str, spelling: str, flag: str) -> None:
    folder = agent_folder(tmp_path)
    victim = folder / target
    before = victim.read_bytes()
    output = victim
    if spelling == "symlink":
        output = tmp_path / "out.link"
        output.symlink_to(victim)
    elif spelling == "hardlink":
        output = tmp_path / "out.hard"
        output.hardlink_to(victim)
    done = start_run([folder / "faulty.yaml", "--emulate", folder / "faulty_a.scenario.yaml",
                      "--input", QUESTION, flag, output]).finish(timeout_s=LIMIT_S)
    assert done.returncode == 1, done.describe()
    assert "Traceback" not in done.stdout + done.stderr
    # The tool module may be found under its resolved name; the flag and what it hit are named.
    assert f"agent-run: error: {flag} {output} is the same file as {TARGETS[target]} " in done.stderr, \
        done.describe()
    assert victim.read_bytes() == before


def previous_run_files(tmp_path: Path) -> tuple[Path, bytes, Path, bytes]:
    out = write_wav(tmp_path / "answer.wav", [speech("An earlier answer."), silence(0.5)], rate=24000)
    transcript = tmp_path / "t.jsonl"
    transcript.write_text('{"type": "user", "ts": 1.0, "text": "from an earlier run"}\n')
    return out, out.read_bytes(), transcript, transcript.read_bytes()


def test_a_run_without_credentials_leaves_an_existing_output_and_transcript_untouched(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    out, wav, transcript, lines = previous_run_files(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(HOME=str(home), AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    done = start_run([DATA / "chat.yaml", "--input", QUESTION, "--output", out, "--transcript", transcript],
                     env=env).finish(timeout_s=LIMIT_S)
    assert done.returncode == 1 and "credentials" in done.stderr, done.describe()
    assert out.read_bytes() == wav
    assert transcript.read_bytes() == lines


def test_a_run_whose_endpoint_cannot_be_reached_leaves_an_existing_output_untouched(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    out, wav, transcript, lines = previous_run_files(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(HOME=str(home), AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="fake",
                   AWS_ENDPOINT_URL_BEDROCK_RUNTIME=f"https://127.0.0.1:{port}")
    done = start_run([DATA / "chat.yaml", "--input", QUESTION, "--output", out, "--transcript", transcript],
                     env=env).finish(timeout_s=LIMIT_S)
    assert done.returncode == 1, done.describe()
    assert "Traceback" not in done.stdout + done.stderr
    assert out.read_bytes() == wav  # the earlier answer is still there, byte for byte
    # The transcript is appended to, never cut: the earlier run's lines come first, then this
    # run's attempt and its end record.
    after = transcript.read_bytes()
    assert after.startswith(lines) and b'"event": "end"' in after[len(lines):], after


def test_a_run_that_speaks_replaces_the_existing_output(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    out, wav, _, _ = previous_run_files(tmp_path)
    done = start_run([DATA / "chat.yaml", "--emulate", "--input", QUESTION, "--output", out,
                      "--idle-exit", "1", "--time-limit", "40"]).finish(timeout_s=60)
    assert done.returncode == 0, done.describe()
    assert out.read_bytes() != wav and read_output(out).seconds > 0.5


@pytest.mark.parametrize("flag", ["--output", "--transcript"])
def test_an_output_that_is_a_fifo_nobody_reads_is_an_error_not_a_hang(
        tmp_path: Path, start_run: Callable[..., Run], flag: str) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    other = ["--transcript", tmp_path / "t.jsonl"] if flag == "--output" else ["--output", tmp_path / "o.wav"]
    done = start_run([DATA / "chat.yaml", "--emulate", "--input", QUESTION, flag, fifo, *other]).finish(
        timeout_s=LIMIT_S)
    assert done.returncode == 1, done.describe()
    assert "Traceback" not in done.stdout + done.stderr
    what = "transcript " if flag == "--transcript" else ""
    assert f"cannot write {what}{fifo}: No such device or address" in done.stderr, done.describe()
