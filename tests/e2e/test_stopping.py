"""A run stops when asked, whatever a tool does; a tool that exits or floods only fails its call.

tests/data/e2e/stubborn.yaml has a sync tool that sleeps 30 s (timeout_s 2), one that calls
sys.exit(), an async one raising KeyboardInterrupt, and one returning ~280 KB (max_result_bytes
4096). The emulator renders "That failed." only when the result it got was a JSON error object.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_helpers import DATA, Finished, Run, read_output, silence, speech, types, write_wav

AGENT = DATA / "stubborn.yaml"
EXPECTED = [("exitTool", "the tool called sys.exit(2)"), ("interruptTool", "KeyboardInterrupt"),
            ("hugeTool", "result too large: 280010 bytes (this tool's max_result_bytes is 4096)"),
            ("hangTool", "timed out after 2 s")]


@pytest.fixture(scope="module")
def stubborn_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Finished, float, Path]]:
    tmp = tmp_path_factory.mktemp("stubborn")
    utterance = speech("Go.")
    parts = [utterance]
    for _ in EXPECTED[1:]:
        parts += [silence(2.5), utterance]
    question = write_wav(tmp / "four_requests.wav", parts)
    transcript, out = tmp / "t.jsonl", tmp / "out.wav"
    run = Run([AGENT, "--emulate", DATA / "stubborn.scenario.yaml", "--input", question,
               "--output", out, "--transcript", transcript, "--idle-exit", "1", "--time-limit", "40"],
              transcript=transcript)
    try:
        run.wait_for_line("session ended", timeout_s=60)
        ended = time.monotonic()
        done = run.finish(timeout_s=30)
        yield done, time.monotonic() - ended, out
    finally:
        run.kill()


def test_the_run_survives_tools_that_exit_interrupt_or_flood(
        stubborn_run: tuple[Finished, float, Path]) -> None:
    done, _, out = stubborn_run
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr + done.stdout
    results = done.entries("tool_result")
    assert [(e["name"], e.get("error")) for e in results] == EXPECTED, done.describe()
    # Every error reached the model as a JSON error result, and each turn was answered.
    assert [e["text"] for e in done.entries("assistant")] == ["That failed."] * 4, done.describe()
    assert types(done.transcript)[-1] == "session" and done.transcript[-1]["event"] == "end"
    assert read_output(out).seconds > 1.0  # the answers were played into a valid WAV


def test_an_oversized_result_is_kept_bounded_in_the_transcript(
        stubborn_run: tuple[Finished, float, Path]) -> None:
    done, _, _ = stubborn_run
    huge = next(e for e in done.entries("tool_result") if e["name"] == "hugeTool")
    assert "result" not in huge
    kept = huge["result_truncated"]
    assert isinstance(kept, str) and kept.startswith('{"rows": ["row 000000"') and len(kept) == 2000


def test_a_hung_sync_tool_does_not_keep_the_process_alive(stubborn_run: tuple[Finished, float, Path]) -> None:
    done, after_end_s, _ = stubborn_run
    # The hanging tool's thread still sleeps (30 s) when the session ends: nothing waits for it.
    assert after_end_s < 2.0, (after_end_s, done.describe())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_while_a_sync_tool_hangs(tmp_path: Path, start_run: Callable[..., Run],
                                                        signum: signal.Signals) -> None:
    question = write_wav(tmp_path / "go.wav", [speech("Go.")])
    transcript = tmp_path / "t.jsonl"
    run = start_run([AGENT, "--emulate", DATA / "hang.scenario.yaml", "--input", question,
                     "--output", tmp_path / "out.wav", "--transcript", transcript, "--time-limit", "40"],
                    transcript=transcript)
    run.wait_for_line("-> tool hangTool")
    time.sleep(0.5)  # inside time.sleep(30) in the handler's thread
    sent = time.monotonic()
    run.proc.send_signal(signum)
    done = run.finish(timeout_s=40)
    took = time.monotonic() - sent
    assert done.returncode == 128 + signum, done.describe()
    assert took < 2.0, took
    assert "Traceback" not in done.stderr
    assert types(done.transcript)[-1] == "session", done.describe()
    assert done.transcript[-1]["event"] == "end" and signum.name in done.transcript[-1]["reason"]
