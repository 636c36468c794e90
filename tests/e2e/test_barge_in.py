"""Barge-in drops the rest of an answer; the simple policy does not let the user interrupt (a
recorded utterance that would talk over the answer waits until the answer has played).

The same input plays into both policies: a question, a pause, then a second utterance timed to
land about two seconds into the first answer's playback (the `wav` sink plays in real time, the
emulator's turn-taking follows the audio it receives). Both runs go concurrently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import (
    DATA,
    OUTPUT_RATE,
    Finished,
    Run,
    read_output,
    sample,
    silence,
    speech_seconds,
    types,
    write_wav,
)

from runner.emulator.scenario import load_scenario, render_say
from runner.emulator.speech import synthesize

SCENARIO = DATA / "long_answer.scenario.yaml"
# Question 1 (thanks_bye.wav) ends at 1.7 s; the emulator ends the turn 0.4 s later (speech_end_ms)
# and the answer starts playing ~0.3 s after that (speech synthesis): utterance 2 (what_time_is_it.wav)
# starts ~2 s into the 6.5 s answer and ends long before it would.
PAUSE_S = 2.8


def answer_seconds(turn: int) -> float:
    """How long the emulator's spoken answer of `turn` lasts (the same synthesis it uses)."""
    say = load_scenario(SCENARIO).turns[turn].items[0]
    pcm = synthesize(render_say(say.text, {}), OUTPUT_RATE)  # type: ignore[union-attr]
    return len(pcm) / 2 / OUTPUT_RATE


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Finished, Path]]]:
    tmp = tmp_path_factory.mktemp("barge_in")
    question = write_wav(tmp / "talk_over.wav", [sample("thanks_bye.wav"), silence(PAUSE_S),
                                                   sample("what_time_is_it.wav")])
    started: dict[str, tuple[Run, Path]] = {}
    for name, agent in (("barge-in", "chat.yaml"), ("simple", "chat_simple.yaml")):
        out, transcript = tmp / f"{name}.wav", tmp / f"{name}.jsonl"
        started[name] = (Run([DATA / agent, "--emulate", SCENARIO, "--input", question, "--output", out,
                              "--transcript", transcript, "--idle-exit", "1", "--time-limit", "40"],
                             transcript=transcript), out)
    try:
        yield {name: (run.finish(), out) for name, (run, out) in started.items()}
    finally:
        for run, _ in started.values():
            run.kill()


def test_barge_in_drops_the_rest_of_the_answer(both_runs: dict[str, tuple[Finished, Path]]) -> None:
    done, out = both_runs["barge-in"]
    assert done.returncode == 0, done.describe()
    kinds = types(done.transcript)
    assert "interrupted" in kinds, done.describe()
    # Interrupted during the first answer; the second utterance then gets its own answer.
    users = [e["text"] for e in done.entries("user")]
    assert users == ["Tell me a long story.", "Stop, what time is it?"], done.describe()
    interrupted_at = kinds.index("interrupted")
    after = done.transcript[interrupted_at:]
    assert any(e["type"] == "assistant" and e["text"] == "Second answer." for e in after), done.describe()
    assert "interrupted" in done.stdout.lower()

    wav = read_output(out)
    full_s, second_s = answer_seconds(0), answer_seconds(1)
    # Without the cut the file would hold both answers (~7.7 s); with it, ~2 s of the first.
    assert wav.seconds < 0.6 * full_s + second_s, (wav.seconds, full_s, second_s)
    assert speech_seconds(wav.samples, wav.rate) > second_s, "some of the first answer should have played"


def test_simple_policy_does_not_let_the_user_interrupt(both_runs: dict[str, tuple[Finished, Path]]) -> None:
    done, out = both_runs["simple"]
    assert done.returncode == 0, done.describe()
    assert "interrupted" not in types(done.transcript), done.describe()
    # The mic gate was closed while the assistant spoke, so the recorded second utterance waited
    # (a file source holds its place while muted) and was heard only after the whole answer.
    users = [e["text"] for e in done.entries("user")]
    assert users == ["Tell me a long story.", "Stop, what time is it?"], done.describe()
    first_answer = next(e for e in done.entries("assistant"))
    second_user = done.entries("user")[1]
    assert second_user["ts"] - first_answer["ts"] > answer_seconds(0) - 0.5, done.describe()
    wav = read_output(out)
    full_s, second_s = answer_seconds(0), answer_seconds(1)
    assert wav.seconds == pytest.approx(full_s + second_s, abs=0.4), (wav.seconds, full_s, second_s)


def test_the_cut_answer_is_clearly_shorter(both_runs: dict[str, tuple[Finished, Path]]) -> None:
    cut = read_output(both_runs["barge-in"][1])
    whole = read_output(both_runs["simple"][1])
    first_answer_played = cut.seconds - answer_seconds(1)
    assert first_answer_played < whole.seconds - answer_seconds(1) - 2.5, (cut.seconds, whole.seconds)
    assert np.abs(whole.samples).max() > 1000  # the uninterrupted answer is real speech, not silence
