"""Issue 13: every file a run reads on the user's say-so, as every kind of non-regular file.

Targets: the agent file, its system_prompt_file, an event template override, the --emulate
scenario, the --input WAV, and the files the AWS SDK reads (AWS_SHARED_CREDENTIALS_FILE,
AWS_CONFIG_FILE, SSL_CERT_FILE: a FIFO there hung the run beyond any signal, /dev/zero ate memory
until the kernel killed it). Kinds: /dev/zero, /dev/urandom, a FIFO nobody writes, a FIFO a
process writes slowly, a symbolic-link loop. Each run must end with exit 1 or 2, name the file,
give the reason, print no traceback, and do so within a few seconds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_helpers import SAMPLES, Finished, Run, base_env

LIMIT_S = 30.0  # each run takes ~1-2 s; five start together on a shared 2-core machine (15 s was
# overrun under load): a FIFO that blocks never ends, so any bound catches it
KINDS = ["dev-zero", "dev-urandom", "fifo", "slow-fifo", "symlink-loop"]
REASONS = ("is a character device, not a regular file", "is a FIFO (named pipe), not a regular file",
           "symbolic link loop")
QUESTION = SAMPLES / "what_time_is_it.wav"
AGENT = "version: 1\nname: t\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: tiffany\n"


@pytest.fixture
def writers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for writer in started:
        writer.kill()
        writer.wait()


def make(path: Path, kind: str, writers: list[subprocess.Popen[bytes]]) -> Path:
    """`path` made into a non-regular file of `kind`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("dev-zero", "dev-urandom"):
        path.symlink_to("/dev/zero" if kind == "dev-zero" else "/dev/urandom")
    elif kind == "symlink-loop":
        path.symlink_to(path.name)
    else:
        os.mkfifo(path)
        if kind == "slow-fifo":  # a writer that never finishes: one line a second
            writers.append(subprocess.Popen(["sh", "-c", f"while :; do echo x; sleep 1; done > '{path}'"]))
    return path


def agent_file(tmp: Path, extra: str = "system_prompt: Hi.\n") -> Path:
    agent = tmp / "agent.yaml"
    agent.write_text(AGENT + extra + "allow_files_outside_agent_folder: true\n")
    return agent


def run_args(target: str, tmp: Path, kind: str,
             writers: list[subprocess.Popen[bytes]]) -> tuple[list[str | Path], dict[str, str], Path]:
    """The command line and environment that make the run read `target` as a `kind` file."""
    (tmp / "home").mkdir(parents=True)
    env = base_env(HOME=str(tmp / "home"), AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    out: list[str | Path] = ["--input", QUESTION, "--output", tmp / "out.wav"]
    if target == "agent":
        bad = make(tmp / "agent.yaml", kind, writers)
        return [bad, "--emulate", *out], env, bad
    if target == "system_prompt_file":
        bad = make(tmp / "prompt.txt", kind, writers)
        return [agent_file(tmp, "system_prompt_file: prompt.txt\n"), "--emulate", *out], env, bad
    if target == "template":
        bad = make(tmp / "tpl" / "promptStart.json.j2", kind, writers)
        return [agent_file(tmp, "system_prompt: Hi.\ntemplates: tpl\n"), "--emulate", *out], env, bad
    if target == "scenario":
        bad = make(tmp / "scenario.yaml", kind, writers)
        return [agent_file(tmp), "--emulate", bad, *out], env, bad
    if target == "input":
        bad = make(tmp / "in.wav", kind, writers)
        return [agent_file(tmp), "--emulate", "--input", bad, "--output", tmp / "out.wav"], env, bad
    # The SDK's own files, read only by a run against AWS (fake keys: nothing is reached).
    bad = make(tmp / "sdk-file", kind, writers)
    env.update({target: str(bad), "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "fake"})
    return [agent_file(tmp), *out], env, bad


TARGETS = ["agent", "system_prompt_file", "template", "scenario", "input",
           "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "SSL_CERT_FILE"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_kind_of_non_regular_file_is_one_clear_error(
        tmp_path: Path, start_run: Callable[..., Run], writers: list[subprocess.Popen[bytes]],
        target: str) -> None:
    runs = {}
    for kind in KINDS:
        args, env, bad = run_args(target, tmp_path / kind, kind, writers)
        runs[kind] = (start_run(args, env=env), bad)
    for kind, (run, bad) in runs.items():
        done: Finished = run.finish(timeout_s=LIMIT_S * 2)
        text = done.stdout + done.stderr
        assert done.returncode in (1, 2), (kind, done.describe())
        assert done.elapsed_s < LIMIT_S, (kind, done.describe())
        assert "Traceback" not in text, (kind, done.describe())
        assert str(bad) in done.stderr + done.stdout, (kind, done.describe())
        assert any(reason in text for reason in REASONS), (kind, done.describe())


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_doctor_reports_a_fifo_sdk_file_instead_of_hanging(
        tmp_path: Path, start_run: Callable[..., Run], variable: str) -> None:
    fifo = tmp_path / "sdk.fifo"
    os.mkfifo(fifo)
    (tmp_path / "home").mkdir()
    env = base_env(HOME=str(tmp_path / "home"), AWS_EC2_METADATA_DISABLED="true", **{variable: str(fifo)})
    done = start_run(["doctor"], env=env).finish(timeout_s=LIMIT_S * 2)
    assert done.returncode == 1, done.describe()
    assert done.elapsed_s < LIMIT_S and "Traceback" not in done.stdout + done.stderr, done.describe()
    assert f"{fifo}: is a FIFO (named pipe), not a regular file" in done.stdout, done.describe()
