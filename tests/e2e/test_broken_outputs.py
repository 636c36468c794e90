"""A full disk, a closed stdout, an output that is the input: a clear error or a quiet run, never a
traceback; the transcript (where writable) ends with its end record and the WAV stays valid."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import DATA, REPO, SAMPLES, Run, base_env, read_jsonl, types

AGENT = DATA / "chat.yaml"
SCENARIO = DATA / "long_answer.scenario.yaml"  # a 6.5 s first answer
QUESTION = SAMPLES / "thanks_bye.wav"


def args(**extra: Path | str) -> list[str | Path]:
    flags: list[str | Path] = [AGENT, "--emulate", SCENARIO, "--input", QUESTION, "--idle-exit", "1",
                               "--time-limit", "40"]
    for name, value in extra.items():
        flags += [f"--{name}", value]
    return flags


def assert_valid_wav(path: Path) -> float:
    """The header's sizes match the file: every byte after the header is whole 16-bit samples."""
    size = path.stat().st_size
    with wave.open(str(path), "rb") as w:
        frames = w.getnframes()
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        assert 44 + frames * 2 == size, (frames, size)
        return frames / w.getframerate()


def test_output_on_a_full_device_is_a_clear_error(tmp_path: Path, start_run: Callable[..., Run]) -> None:
    transcript = tmp_path / "t.jsonl"
    done = start_run(args(output="/dev/full", transcript=transcript), transcript=transcript).finish()
    assert done.returncode == 1, done.describe()
    assert "agent-run: error: cannot write /dev/full: No space left on device" in done.stderr, done.describe()
    assert "Traceback" not in done.stderr + done.stdout


def test_transcript_on_a_full_device_ends_the_run_with_a_clear_error(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    out = tmp_path / "out.wav"
    done = start_run(args(output=out, transcript="/dev/full")).finish()
    assert done.returncode == 1, done.describe()
    assert "agent-run: error: cannot write transcript /dev/full: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert_valid_wav(out)


def test_output_filling_up_mid_run_keeps_a_valid_wav_and_the_transcript(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the WAV hit "File too large" (EFBIG) after ~1.3 s of the 6.5 s answer,
    # exactly as a full disk would (ENOSPC): the same write fails, the same way.
    limit = 64 * 1024
    out, transcript = tmp_path / "out.wav", tmp_path / "t.jsonl"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "runner", *map(str, args(output=out, transcript=transcript))]
    proc = subprocess.Popen(command, cwd=REPO, env=base_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=small_files)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    described = f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert proc.returncode == 1, described
    assert f"agent-run: error: cannot write {out}: File too large (the file keeps the" in stderr, described
    assert "Traceback" not in stderr + stdout
    seconds = assert_valid_wav(out)
    assert 1.0 < seconds < 1.5, seconds
    entries = read_jsonl(transcript)
    assert types(entries)[-1] == "session" and entries[-1]["event"] == "end", entries
    assert "File too large" in entries[-1]["reason"]


def test_a_closed_stdout_lets_the_run_finish_quietly(tmp_path: Path, start_run: Callable[..., Run]) -> None:
    # As `agent-run ... | head -2`: the reader goes away after two lines.
    out, transcript = tmp_path / "out.wav", tmp_path / "t.jsonl"
    run = start_run(args(output=out, transcript=transcript), transcript=transcript)
    assert run.proc.stdout is not None
    first_two = [run.proc.stdout.readline(), run.proc.stdout.readline()]
    assert all(first_two), first_two
    run.proc.stdout.close()
    assert run.proc.stderr is not None
    returncode = run.proc.wait(timeout=60)
    stderr = run.proc.stderr.read()
    assert returncode == 0, stderr
    assert stderr == "", stderr  # no BrokenPipeError, no "Exception ignored"
    entries = read_jsonl(transcript)
    # The whole conversation still happened and was recorded after stdout went away.
    assert [e["text"] for e in entries if e["type"] == "assistant"], entries
    assert types(entries)[-1] == "session" and entries[-1]["event"] == "end", entries
    assert assert_valid_wav(out) > 5.0  # the whole answer was played after stdout went away


@pytest.mark.parametrize("spelling", ["same", "symlink", "dotted", "hardlink"])
def test_output_naming_the_input_is_refused_before_anything_is_written(
        tmp_path: Path, start_run: Callable[..., Run], spelling: str) -> None:
    question = tmp_path / "question.wav"
    original = QUESTION.read_bytes()
    question.write_bytes(original)
    output = {"same": question, "dotted": tmp_path / "." / "sub" / ".." / "question.wav"}.get(spelling)
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        output = tmp_path / "answer.wav"
        output.symlink_to(question)
    elif spelling == "hardlink":
        output = tmp_path / "answer.wav"
        output.hardlink_to(question)
    assert output is not None
    run = start_run([AGENT, "--emulate", SCENARIO, "--input", question, "--output", output])
    done = run.finish(timeout_s=20)
    assert done.returncode == 1, done.describe()
    assert f"--output {output} is the same file as --input {question}" in done.stderr, done.describe()
    assert "Traceback" not in done.stderr
    assert question.read_bytes() == original  # the recording is intact


def test_transcript_naming_the_output_is_refused(tmp_path: Path, start_run: Callable[..., Run]) -> None:
    out = tmp_path / "out.wav"
    done = start_run(args(output=out, transcript=out)).finish(timeout_s=20)
    assert done.returncode == 1, done.describe()
    assert f"--transcript {out} is the same file as --output {out}" in done.stderr
    assert not out.exists()


def test_a_run_started_with_stdout_closed_runs_quietly(tmp_path: Path) -> None:
    # As `agent-run ... >&-`: Python then has no sys.stdout at all.
    out, transcript = tmp_path / "out.wav", tmp_path / "t.jsonl"
    command = [sys.executable, "-m", "runner", *map(str, args(output=out, transcript=transcript))]
    done = subprocess.run(command, cwd=REPO, env=base_env(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=60, preexec_fn=lambda: os.close(1))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    entries = read_jsonl(transcript)
    assert types(entries)[-1] == "session" and entries[-1]["event"] == "end", entries
    assert assert_valid_wav(out) > 5.0
