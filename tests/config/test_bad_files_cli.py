"""Issue 8: hostile or mistaken files given to `agent-run check`, as a user meets them (real CLI).

Each case must end in well under the subprocess timeout with one located error line and no
traceback; before the fix they hung (FIFOs, /dev/zero), took tens of seconds and gigabytes (alias
bombs), crashed (symlink loops) or silently read files outside the agent's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.files import MAX_AGENT_FILE_BYTES

ROOT = Path(__file__).resolve().parents[2]
HEAD = "version: 1\nname: t\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: matthew\n"
AGENT = HEAD + "system_prompt: Hello.\n"
# Generous: the fixed cases take about half a second (most of it Python starting up).
TIMEOUT_S = 20


def check(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "runner", "check", *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result, time.monotonic() - started


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if ": error: " in line]


def billion_laughs(levels: int) -> str:
    lines = [HEAD + "system_prompt: Hello.", "vars:",
             '  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 9])
def test_a_yaml_alias_bomb_is_refused_quickly_at_the_alias(tmp_path: Path, levels: int) -> None:
    agent = tmp_path / "bomb.yaml"
    agent.write_text(billion_laughs(levels))
    result, elapsed = check(agent)
    assert result.returncode == 1
    # vars.l5 is on line 12; its first `*l4` (9**5 values, over the 100 000 budget) at column 12.
    assert errors(result) == [f"{agent}:12:12: error: invalid YAML: alias *l4 expands the document to "
                              f"more than 100000 values (aliases of aliases: a YAML bomb?)"]
    assert elapsed < 10, elapsed


def test_merge_keys_with_an_override_still_work(tmp_path: Path) -> None:
    agent = tmp_path / "merge.yaml"
    agent.write_text(AGENT + """\
tools:
  - &base
    name: lookUp
    description: Looks up.
    input_schema: {type: object, properties: {}}
    handler: builtin:current_datetime
  - <<: *base
    name: lookUpAgain
    description: Looks up again.
""")
    result, _ = check(agent)
    assert result.returncode == 0, result.stdout  # was: duplicate key 'name', 'description'
    assert result.stdout == "1 file checked: 0 errors, 0 warnings\n"


def test_an_agent_file_over_the_size_limit_is_refused_without_parsing(tmp_path: Path) -> None:
    agent = tmp_path / "huge.yaml"
    agent.write_text(AGENT + ("# padding\n" * (MAX_AGENT_FILE_BYTES // 10 + 1)))
    result, elapsed = check(agent)
    assert result.returncode == 1
    (line,) = errors(result)
    assert line.startswith(f"{agent}:1:1: error: is too large (") and "limit for an agent file" in line
    assert elapsed < 10


@pytest.fixture
def fifo_with_writer(tmp_path: Path) -> Iterator[Path]:
    """A FIFO that a process is waiting to fill endlessly (`yes > fifo`); killed at teardown."""
    fifo = tmp_path / "writer.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"exec yes > '{fifo}'"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        yield fifo
    finally:
        writer.kill()
        writer.wait()


def test_non_regular_agent_files_get_one_clear_error_each(tmp_path: Path, fifo_with_writer: Path) -> None:
    fifo = tmp_path / "agent.fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop.name)
    result, elapsed = check(fifo, fifo_with_writer, "/dev/zero", loop)
    assert result.returncode == 1
    assert errors(result) == [
        f"{fifo}:1:1: error: is a FIFO (named pipe), not a regular file",
        f"{fifo_with_writer}:1:1: error: is a FIFO (named pipe), not a regular file",
        "/dev/zero:1:1: error: is a character device, not a regular file",
        f"{loop}:1:1: error: symbolic link loop (the link points back at itself)",
    ]
    assert elapsed < 10


def test_a_non_regular_prompt_file_or_template_is_reported_at_its_key_or_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "prompt.fifo")
    (tmp_path / "tpl").mkdir()
    os.mkfifo(tmp_path / "tpl" / "promptEnd.json.j2")
    (tmp_path / "zero").symlink_to("/dev/zero")
    loop_tpl = tmp_path / "tpl2" / "sessionEnd.json.j2"
    loop_tpl.parent.mkdir()
    loop_tpl.symlink_to(loop_tpl.name)
    (tmp_path / "loop.txt").symlink_to("loop.txt")
    first, second, third, fourth = (tmp_path / f"{name}.yaml" for name in "abcd")
    first.write_text(HEAD + "system_prompt_file: prompt.fifo\ntemplates: tpl\n")
    second.write_text(HEAD + "system_prompt_file: zero\nallow_files_outside_agent_folder: true\n")
    third.write_text(AGENT + "templates: tpl2\n")
    fourth.write_text(HEAD + "system_prompt_file: loop.txt\ntemplates: tpl3\n")
    (tmp_path / "tpl3").symlink_to("tpl3")
    result, elapsed = check(first, second, third, fourth)
    assert errors(result) == [
        f"{first}:5:1: error: system_prompt_file 'prompt.fifo': is a FIFO (named pipe), not a regular "
        f"file (resolved to {tmp_path}/prompt.fifo)",
        f"{tmp_path}/tpl/promptEnd.json.j2:1:1: error: is a FIFO (named pipe), not a regular file",
        f"{second}:5:1: error: system_prompt_file 'zero': is a character device, not a regular file "
        f"(resolved to {tmp_path}/zero)",
        f"{loop_tpl}:1:1: error: symbolic link loop (the link points back at itself)",
        f"{fourth}:5:1: error: system_prompt_file 'loop.txt': symbolic link loop (the link points back at "
        f"itself) (resolved to {tmp_path}/loop.txt)",
        f"{fourth}:6:1: error: templates folder 'tpl3' is a symbolic link loop (resolved to {tmp_path}/tpl3)",
    ]
    assert elapsed < 10


def test_files_outside_the_agent_folder_need_an_explicit_opt_in(tmp_path: Path) -> None:
    folder = tmp_path / "agent"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("Top secret prompt.\n")
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "sessionEnd.json.j2").write_text('{"event": {"sessionEnd": {}}}\n')
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "own").mkdir()
    (folder / "own" / "sessionEnd.json.j2").symlink_to(tmp_path / "tpl" / "sessionEnd.json.j2")
    cases = {
        "dotdot.yaml": "system_prompt_file: ../secret.txt\n",
        "absolute.yaml": f"system_prompt_file: {tmp_path}/secret.txt\ntemplates: {tmp_path}/tpl\n",
        "symlink.yaml": "system_prompt_file: link.txt\n",
        "linked_template.yaml": "system_prompt: Hello.\ntemplates: own\n",
    }
    for name, tail in cases.items():
        (folder / name).write_text(HEAD + tail)
    result, _ = check(*(folder / name for name in cases))
    outside = "outside the agent's folder"
    opt_in = "set 'allow_files_outside_agent_folder: true' to allow it"
    lines = errors(result)
    assert len(lines) == 5, result.stdout
    assert all(outside in line and opt_in in line for line in lines), lines
    assert [line.split(": error: ")[0] for line in lines] == [
        f"{folder}/dotdot.yaml:5:1", f"{folder}/absolute.yaml:5:1", f"{folder}/absolute.yaml:6:1",
        f"{folder}/symlink.yaml:5:1", f"{folder}/linked_template.yaml:6:1"]
    assert f"resolves to {tmp_path}/secret.txt" in lines[0]

    for name in cases:
        path = folder / name
        path.write_text(path.read_text() + "allow_files_outside_agent_folder: true\n")
    result, _ = check(*(folder / name for name in cases))
    assert result.returncode == 0, result.stdout
