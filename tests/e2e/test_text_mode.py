"""Text mode (`agent-run AGENT.yaml --text`): typed lines go to the model as interactive USER text.

Every run is the real CLI with `--emulate` (the real SDK over TLS to the emulator). Without a
scenario the emulator answers a typed line with "You said: <line>" (spoken by espeak-ng), so a
test can tell which line each answer belongs to. Lines come from a pipe, a file or a terminal
(a pseudo-terminal: a person typing, whose line interrupts the assistant).
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_helpers import DATA, ORDERS, ORDERS_SCENARIO, OUTPUT_RATE, Finished, Run, read_output, speech_seconds

CHAT = DATA / "chat.yaml"
LEGACY = DATA / "stubborn.yaml"  # amazon.nova-sonic-v1:0: no interactive text
LONG_LINE = "Please tell me a long story about the sea and the ships that sail on it every single day"


def piped(lines: list[str], args: list[str | Path], transcript: Path) -> Run:
    """A run whose stdin is a pipe carrying `lines`, then its end."""
    run = Run(args, transcript=transcript, stdin=subprocess.PIPE)
    assert run.proc.stdin is not None
    run.proc.stdin.write("".join(f"{line}\n" for line in lines))
    run.proc.stdin.close()
    run.proc.stdin = None  # closed: communicate() must not flush it
    return run


def said(done: Finished) -> list[tuple[str, str]]:
    return [(e["type"], e["text"]) for e in done.transcript if e["type"] in ("user", "assistant")]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("text")


@pytest.fixture(scope="module")
def runs(tmp: Path) -> Iterator[dict[str, Finished]]:
    """The runs that need no interaction, started together so they overlap."""
    def args(name: str, agent: Path, *extra: str | Path) -> list[str | Path]:
        return [agent, "--text", "--emulate", *extra, "--transcript", tmp / f"{name}.jsonl"]

    started: dict[str, Run] = {}
    started["piped"] = piped(["Hello there", "", "How are you?"], args("piped", CHAT, "--mute"),
                             tmp / "piped.jsonl")
    request = tmp / "request.txt"
    request.write_text("Where is my order 12345?\n", encoding="utf-8")
    with request.open("rb") as stdin:  # a regular file, as `agent-run ... < request.txt`
        started["tool"] = Run(args("tool", ORDERS, ORDERS_SCENARIO, "--output", tmp / "tool.wav"),
                              transcript=tmp / "tool.jsonl", stdin=stdin)
    # Both lines in turn: the whole first answer, then the second (the barge-in test's control).
    started["control"] = piped([LONG_LINE, "Stop"], args("control", CHAT, "--output", tmp / "control.wav"),
                               tmp / "control.jsonl")
    rotating = tmp / "rotating.yaml"
    agent = CHAT.read_text(encoding="utf-8") + "\nsession:\n  rotate_after_s: 2\n"
    rotating.write_text(agent, encoding="utf-8")
    # A new stream every 2 s: the idle exit must come sooner (closing a stream is activity).
    rotating_args = args("rotating", rotating, "--mute", "--idle-exit", "1")
    started["rotating"] = piped(["One", "Two", "Three"], rotating_args, tmp / "rotating.jsonl")
    # Half duplex with a greeting: the typed line waits for the greeting's answer.
    greeter_args = args("greeter", DATA / "greeter.yaml", "--mute")
    started["greeter"] = piped(["Hi"], greeter_args, tmp / "greeter.jsonl")
    try:
        yield {name: run.finish() for name, run in started.items()}
    finally:
        for run in started.values():
            run.kill()


def test_piped_lines_are_answered_in_turn_and_the_run_ends_at_eof(runs: dict[str, Finished]) -> None:
    done = runs["piped"]
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr
    # Each typed line recorded once (its echo from the service is not a second `user` entry).
    assert said(done) == [("user", "Hello there"), ("assistant", "You said: Hello there"),
                          ("user", "How are you?"), ("assistant", "You said: How are you?")], done.describe()
    assert done.stdout.count("you:       Hello there") == 1, done.stdout
    assert "assistant: You said: How are you?" in done.stdout
    assert "session ended: input finished and the conversation is idle" in done.stdout
    assert not [e for e in done.transcript if e["type"] == "interrupted"], "a script takes turns"


def test_a_line_waits_for_the_greeting_and_is_not_taken_for_it(runs: dict[str, Finished]) -> None:
    done = runs["greeter"]
    assert done.returncode == 0, done.describe()
    greeting = "Greet the caller and ask how you can help."
    spoken = ("greeting", "user", "assistant")
    texts = [(e["type"], e["text"]) for e in done.transcript if e["type"] in spoken]
    assert texts == [("greeting", greeting), ("assistant", f"You said: {greeting}"),
                     ("user", "Hi"), ("assistant", "You said: Hi")], done.describe()


def test_a_typed_request_calls_a_tool_and_its_answer_is_spoken(runs: dict[str, Finished]) -> None:
    done = runs["tool"]
    assert done.returncode == 0, done.describe()
    assert done.entries("user")[0]["text"] == "Where is my order 12345?"
    [call] = done.entries("tool_call")
    assert (call["name"], call["input"]) == ("trackOrderTool", {"orderId": "12345"}), done.describe()
    [result] = done.entries("tool_result")
    assert result["result"]["orderNumber"] == "12345" and "error" not in result, done.describe()
    answers = [e["text"] for e in done.entries("assistant")]
    assert answers[0] == "Let me check that order for you."
    assert answers[-1].startswith("Your order 12345 is "), done.describe()


def test_the_answers_are_spoken_into_the_output_file(runs: dict[str, Finished], tmp: Path) -> None:
    wav = read_output(tmp / "tool.wav")
    assert (wav.rate, wav.channels) == (OUTPUT_RATE, 1)
    # Two sentences of espeak-ng speech: seconds of it, not a few stray samples.
    assert speech_seconds(wav.samples, wav.rate) > 2.0, runs["tool"].describe()


def test_the_conversation_continues_on_a_new_stream(runs: dict[str, Finished]) -> None:
    done = runs["rotating"]
    assert done.returncode == 0, done.describe()
    starts = [e for e in done.entries("session") if e["event"] == "start"]
    assert len(starts) >= 2, done.describe()
    assert starts[-1]["history_messages"] > 0, "the later stream was given the conversation so far"
    assert [t for kind, t in said(done) if kind == "user"] == ["One", "Two", "Three"], done.describe()
    answers = {t for kind, t in said(done) if kind == "assistant"}
    assert {"You said: One", "You said: Two", "You said: Three"} <= answers, done.describe()


def test_typing_over_the_assistant_interrupts_it(runs: dict[str, Finished], tmp: Path) -> None:
    """At a terminal, a line typed while the assistant speaks cuts its answer short (barge-in)."""
    control = runs["control"]
    assert control.returncode == 0, control.describe()
    master, slave = pty.openpty()
    try:
        run = Run([CHAT, "--text", "--emulate", "--output", tmp / "barge.wav", "--transcript",
                   tmp / "barge.jsonl"], transcript=tmp / "barge.jsonl", stdin=slave)
        os.close(slave)
        run.wait_for_line("text mode: type a line")
        os.write(master, f"{LONG_LINE}\n".encode())
        run.wait_for_line(f"assistant: You said: {LONG_LINE}")  # all sent; most still to be played
        os.write(master, b"Stop\n")
        run.wait_for_line("assistant: You said: Stop")
        os.write(master, b"\x04")  # Ctrl-D: the input ends
        done = run.finish()
    finally:
        os.close(master)
    assert done.returncode == 0, done.describe()
    kinds = [e["type"] for e in done.transcript if e["type"] in ("user", "assistant", "interrupted")]
    assert kinds == ["user", "assistant", "interrupted", "user", "assistant"], done.describe()
    assert "[assistant interrupted]" in done.stdout
    cut = speech_seconds(read_output(tmp / "barge.wav").samples, OUTPUT_RATE)
    whole = speech_seconds(read_output(tmp / "control.wav").samples, OUTPUT_RATE)
    # The control played the whole long answer (several seconds), then "You said: Stop".
    assert cut < whole - 2.0, (cut, whole, done.describe())


def test_a_model_without_text_input_is_refused(start_run: Callable[..., Run]) -> None:
    done = start_run([LEGACY, "--text", "--emulate"]).finish()
    assert done.returncode == 2, done.describe()
    assert "answers speech only" in done.stderr and "amazon.nova-2-sonic-v1:0" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("flags", "message"), [
    (["--text", "--input", "samples/where_is_my_order.wav"], "--text and --input cannot be used together"),
    (["--mute", "--output", "out.wav"], "--mute and --output cannot be used together"),
])
def test_contradicting_options_are_a_usage_error(start_run: Callable[..., Run], flags: list[str],
                                                message: str) -> None:
    done = start_run([CHAT, "--emulate", *flags]).finish()
    assert done.returncode == 2, done.describe()
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_stops_a_text_run_within_two_seconds(start_run: Callable[..., Run], tmp: Path) -> None:
    transcript = tmp / "sigint.jsonl"
    run = start_run([CHAT, "--text", "--mute", "--emulate", "--transcript", transcript],
                    transcript=transcript, stdin=subprocess.PIPE)
    assert run.proc.stdin is not None
    run.wait_for_line("Ctrl-C to stop")
    run.proc.stdin.write(f"{LONG_LINE}\n")
    run.proc.stdin.flush()
    run.wait_for_line("assistant: You said:")  # its speech is playing; the input stays open
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    run.proc.wait(timeout=10)
    took = time.monotonic() - sent
    done = run.finish()
    assert done.returncode == 130, done.describe()
    assert took < 2.0, took
    assert "Traceback" not in done.stderr
    assert done.transcript[-1]["type"] == "session" and "SIGINT" in done.transcript[-1]["reason"]
