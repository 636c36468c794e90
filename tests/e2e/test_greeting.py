"""The greeting is shown and recorded as the greeting, and with the half-duplex policy a recorded
question waits for it instead of playing into the closed mic gate.

greeter.yaml (Nova 2, `policy: simple`, a greeting) and listener.yaml (the same without greeting)
hear the same WAV, a question after 1 s of silence, through the emulator's default answers ("You
said: ..." to text, "I heard you speak for N seconds." to speech). Both runs go concurrently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from e2e_helpers import DATA, Finished, Run, sample, silence, write_wav

GREETING = "Greet the caller and ask how you can help."


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Finished]]:
    tmp = tmp_path_factory.mktemp("greeting")
    question = write_wav(tmp / "question.wav", [silence(1.0), sample("where_is_my_order.wav")])
    started = {}
    for name in ("greeter", "listener"):
        transcript = tmp / f"{name}.jsonl"
        started[name] = Run([DATA / f"{name}.yaml", "--emulate", "--input", question,
                             "--output", tmp / f"{name}.wav", "--transcript", transcript,
                             "--idle-exit", "1", "--time-limit", "40"], transcript=transcript)
    try:
        yield {name: run.finish() for name, run in started.items()}
    finally:
        for run in started.values():
            run.kill()


def heard_seconds(done: Finished) -> float:
    answers = [e["text"] for e in done.entries("assistant")]
    spoken = [float(m.group(1)) for a in answers if (m := re.search(r"speak for ([\d.]+) seconds", a))]
    assert len(spoken) == 1, done.describe()
    return spoken[0]


def test_the_greeting_is_recorded_as_the_greeting(runs: dict[str, Finished]) -> None:
    done = runs["greeter"]
    assert done.returncode == 0, done.describe()
    assert [e["text"] for e in done.entries("greeting")] == [GREETING], done.describe()
    assert all(e["text"] != GREETING for e in done.entries("user")), done.describe()
    kinds = [e["type"] for e in done.transcript if e["type"] in ("greeting", "user", "assistant")]
    assert kinds == ["greeting", "assistant", "user", "assistant"], done.describe()
    assert f"greeting:  {GREETING}" in done.stdout
    assert f"you:       {GREETING}" not in done.stdout


def test_the_question_is_heard_whole_after_the_greeting(runs: dict[str, Finished]) -> None:
    # Before: the file kept playing while the greeting muted the mic, and 3.5 s became 1.2 s.
    control = heard_seconds(runs["listener"])
    assert control > 3.0, runs["listener"].describe()
    assert heard_seconds(runs["greeter"]) == pytest.approx(control, abs=0.3), runs["greeter"].describe()
