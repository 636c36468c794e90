"""Issue 8: bad files met only once a run has started (the real CLI with the emulator).

An `--input` that is a FIFO hung the run in `open()`; an event template that loops only with the
real run's values (so `check` passed it) hung it for hours; and a template override the service
refused ended the run with the service's message alone, naming no file.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_helpers import REPO, SAMPLES, Finished, Run

QUESTION = SAMPLES / "what_time_is_it.wav"
AGENT = "version: 1\nname: t\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: tiffany\nsystem_prompt: Hi.\n"
PROMPT_START = (REPO / "runner/protocol/templates/promptStart.json.j2").read_text()
# Everything below finishes in about 2 s (emulator start-up included); the limit only catches hangs.
LIMIT_S = 30


def no_traceback(done: object) -> None:
    text = getattr(done, "stdout", "") + getattr(done, "stderr", "")
    assert "Traceback" not in text, text


@pytest.fixture
def fifo_with_writer(tmp_path: Path) -> Iterator[Path]:
    fifo = tmp_path / "writer.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"exec cat '{QUESTION}' > '{fifo}'"])
    try:
        yield fifo
    finally:
        writer.kill()
        writer.wait()


def test_an_input_that_is_not_a_regular_file_is_one_clear_error(
        tmp_path: Path, fifo_with_writer: Path, start_run: Callable[..., Run]) -> None:
    fifo = tmp_path / "silent.fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop.name)
    inputs = {fifo: "is a FIFO (named pipe), not a regular file",
              fifo_with_writer: "is a FIFO (named pipe), not a regular file",
              Path("/dev/zero"): "is a character device, not a regular file",
              loop: "symbolic link loop (the link points back at itself)"}
    runs = {path: start_run(["agents/simple.yaml", "--emulate", "--input", path,
                             "--output", tmp_path / f"out{i}.wav"]) for i, path in enumerate(inputs)}
    for path, run in runs.items():
        done = run.finish(timeout_s=LIMIT_S)
        no_traceback(done)
        assert done.returncode == 1, done.describe()
        assert f"agent-run: error: input file {path}: {inputs[path]}" in done.stderr, done.describe()


def _checked_override_fails_at_run_time(tmp_path: Path, start_run: Callable[..., Run],
                                        text: str) -> tuple[Path, Finished]:
    """A promptStart override `check` accepts; the run with it ends with exit 1 and no traceback."""
    (tmp_path / "tpl").mkdir()
    template = tmp_path / "tpl" / "promptStart.json.j2"
    template.write_text(text)
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT + "templates: tpl\n")
    checked = start_run(["check", agent]).finish(timeout_s=LIMIT_S)
    assert checked.returncode == 0, checked.describe()
    done = start_run([agent, "--emulate", "--input", QUESTION, "--output", tmp_path / "out.wav"]).finish(
        timeout_s=LIMIT_S)
    no_traceback(done)
    assert done.returncode == 1, done.describe()
    return template, done


def test_an_event_template_over_its_time_budget_at_run_time_ends_the_run_naming_it(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    # Slow only for the agent's real voice: `check` renders promptStart with voice "matthew".
    slow = ('{% if voice_id == "tiffany" %}{% for i in range(100000) %}{% for j in range(100000) %}'
            "{% endfor %}{% endfor %}{% endif %}")
    template, done = _checked_override_fails_at_run_time(tmp_path, start_run, slow + PROMPT_START)
    assert f"agent-run: error: {template}:1: template error: rendering took longer than 0.5 s" \
        in done.stderr, done.describe()


def test_an_override_the_service_refuses_is_named_in_the_error(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    # Valid by the event schema (so `check` passes), but the service knows no voice "zed".
    template, done = _checked_override_fails_at_run_time(
        tmp_path, start_run, PROMPT_START.replace("{{ voice_id | tojson }}", '"zed"'))
    assert "ValidationException: Received invalid id: 'zed'" in done.stderr, done.describe()
    # With the emulator naming the refused event, only that template; without, every override.
    assert (f"(the refused promptStart event was rendered by the override {template})" in done.stderr
            or f"(this agent overrides event templates, the likely cause: {template})" in done.stderr), \
        done.describe()


def test_a_prompt_and_greeting_over_budget_only_with_the_runs_vars_are_refused_before_it_starts(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT.replace("system_prompt: Hi.\n", "") + """\
vars: {n: 1}
system_prompt: "Hi.{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"
greeting: "{{ 'Hello' * n * n }}"
""")
    assert start_run(["check", agent]).finish(timeout_s=LIMIT_S).returncode == 0
    done = start_run([agent, "--var", "n=100000", "--emulate", "--input", QUESTION,
                      "--output", tmp_path / "out.wav"]).finish(timeout_s=LIMIT_S)
    no_traceback(done)
    assert done.returncode == 1, done.describe()
    assert f"{agent}:6:1: error: system_prompt: rendering took longer than 0.5 s" in done.stderr
    assert f"{agent}:7:1: error: greeting: repeating a text or list would make 50000000000" in done.stderr
    assert done.elapsed_s < 15, done.describe()
