"""A run without AWS credentials fails fast and clearly; Ctrl-C, SIGTERM and SIGHUP end a run cleanly."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import DATA, ORDERS, SAMPLES, Run, base_env, read_output, types


def test_missing_credentials_fail_fast_with_a_clear_message(tmp_path: Path,
                                                            start_run: Callable[..., Run]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # No AWS_* variable, no ~/.aws: nothing to find. (The SDK alone would hang opening the stream.)
    env = base_env(HOME=str(home), AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    run = start_run([ORDERS, "--input", SAMPLES / "where_is_my_order.wav", "--output", tmp_path / "x.wav"],
                    env=env)
    done = run.finish(timeout_s=10)
    assert done.returncode == 1, done.describe()
    assert done.elapsed_s < 3.0, done.elapsed_s
    message = done.stderr + done.stdout
    assert "credentials" in message and "--emulate" in message, message
    assert "Traceback" not in message
    assert not (tmp_path / "x.wav").exists() or read_output(tmp_path / "x.wav").seconds == 0


@pytest.mark.parametrize(("signum", "when", "code"), [
    (signal.SIGINT, "Ctrl-C to stop", 130),  # the session has just started
    (signal.SIGTERM, "assistant:", 143),     # the assistant is answering (audio queued at the sink)
    (signal.SIGHUP, "assistant:", 129),      # the terminal went away
], ids=["SIGINT-at-start", "SIGTERM-while-answering", "SIGHUP-while-answering"])
def test_a_signal_ends_the_session_with_its_exit_code(tmp_path: Path, start_run: Callable[..., Run],
                                                      signum: signal.Signals, when: str, code: int) -> None:
    transcript = tmp_path / "t.jsonl"
    # No --idle-exit: only the signal stops this run. The answer is long (6.5 s), so SIGTERM lands
    # with seconds of audio still queued for the sink, which a signal must not wait for.
    run = start_run([DATA / "chat.yaml", "--emulate", DATA / "long_answer.scenario.yaml",
                     "--input", SAMPLES / "thanks_bye.wav", "--output", tmp_path / "out.wav",
                     "--transcript", transcript, "--time-limit", "30"], transcript=transcript)
    run.wait_for_line(when)
    time.sleep(0.3)  # the session is streaming audio, not just opening
    sent = time.monotonic()
    run.proc.send_signal(signum)
    done = run.finish(timeout_s=10)
    took = time.monotonic() - sent
    assert done.returncode == code, done.describe()
    assert took < 2.0, took
    assert "Traceback" not in done.stderr
    # read_jsonl checked every line is JSON; the last entry closes the session.
    assert types(done.transcript)[0] == "session" and done.transcript[0]["event"] == "start"
    ends = [i for i, e in enumerate(done.transcript) if e["type"] == "session" and e.get("event") == "end"]
    assert len(ends) == 1, done.describe()
    end = done.transcript[ends[0]]
    assert signal.Signals(signum).name in end["reason"]
    assert ends[0] == len(done.transcript) - 1, done.describe()  # nothing after the end
    # The output WAV is valid even though the run was cut short, and holds no more than was played.
    out = read_output(tmp_path / "out.wav")
    assert out.rate == 24000 and out.seconds < 3.0, out.seconds


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("delay_s", [0.05, 0.2, 0.6])
def test_a_signal_while_starting_prints_no_traceback(tmp_path: Path, start_run: Callable[..., Run],
                                                     signum: signal.Signals, delay_s: float) -> None:
    # Before the conversation's loop handles signals: imports, loading the agent, the emulator.
    run = start_run([DATA / "chat.yaml", "--emulate", DATA / "long_answer.scenario.yaml",
                     "--input", SAMPLES / "thanks_bye.wav", "--output", tmp_path / "out.wav"])
    time.sleep(delay_s)
    run.proc.send_signal(signum)
    done = run.finish(timeout_s=10)
    # Python starts in ~10 ms: until then the signal's default action ends the process (-signum
    # here, 128 + n in a shell); from then on it is the runner's own exit code.
    allowed = (128 + signum, -signum) if delay_s < 0.1 else (128 + signum,)
    assert done.returncode in allowed, done.describe()
    assert "Traceback" not in done.stderr, done.describe()
