"""Every way a tool call can fail becomes a JSON error result for the model; the session goes on.

Two conversations with tests/data/e2e/faulty.yaml (run concurrently), one turn per failure mode:
faulty_a.scenario.yaml calls a handler that sleeps past `timeout_s`, one that raises, one that
returns a value JSON cannot encode; faulty_b.scenario.yaml passes arguments that break the tool's
`input_schema`, calls a tool the agent does not have, then makes a call that works. The emulator
renders each answer from the tool result it received ("That failed." only if that result was a
JSON object with an "error" key), so the transcript shows both what the runner recorded and what
reached the model.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_helpers import DATA, Finished, Run, silence, speech, write_wav

# An utterance (~0.6 s), then time for: end of turn (0.3 s), the slowest tool (0.3 s timeout),
# synthesis and ~1 s of answer played in real time, before the next utterance starts.
GAP_S = 2.3
TURNS = 3
EXPECTED_CALLS = [("slowTool", {}), ("crashTool", {}), ("weirdTool", {}),
                  ("countTool", {"count": "many"}), ("noSuchTool", {}), ("countTool", {"count": 21})]


@pytest.fixture(scope="module")
def faulty_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Finished]]:
    tmp = tmp_path_factory.mktemp("tools")
    utterance = speech("Go.")
    parts = [utterance]
    for _ in range(TURNS - 1):
        parts += [silence(GAP_S), utterance]
    question = write_wav(tmp / "three_requests.wav", parts)
    runs = []
    for part in "ab":
        transcript = tmp / f"{part}.jsonl"
        runs.append(Run([DATA / "faulty.yaml", "--emulate", DATA / f"faulty_{part}.scenario.yaml",
                         "--input", question, "--output", tmp / f"{part}.wav", "--transcript", transcript,
                         "--idle-exit", "1", "--time-limit", "40"], transcript=transcript))
    try:
        yield [run.finish() for run in runs]
    finally:
        for run in runs:
            run.kill()


def results(runs: list[Finished]) -> list[dict[str, object]]:
    return [entry for done in runs for entry in done.entries("tool_result")]


@pytest.mark.parametrize("part", [0, 1])
def test_the_conversation_survives_every_failure(faulty_runs: list[Finished], part: int) -> None:
    done = faulty_runs[part]
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr + done.stdout
    calls = [(e["name"], e["input"]) for e in done.entries("tool_call")]
    assert calls == EXPECTED_CALLS[part * TURNS:(part + 1) * TURNS], done.describe()
    # Every turn was answered, each after its tool result reached the emulator; a failure never
    # stops the next turn from being heard and answered.
    answers = [e["text"] for e in done.entries("assistant")]
    expected = ["That failed."] * 5 + ["Done, 42."]
    assert answers == expected[part * TURNS:(part + 1) * TURNS], done.describe()


@pytest.mark.parametrize(("turn", "tool", "message"), [
    (0, "slowTool", "timed out after 0.3 s"),
    (1, "crashTool", "RuntimeError: database unreachable"),
    (2, "weirdTool", "not JSON-serialisable"),
    (3, "countTool", "invalid arguments: count:"),
    (4, "noSuchTool", "unknown tool 'noSuchTool'"),
])
def test_each_failure_is_an_error_result(faulty_runs: list[Finished], turn: int, tool: str,
                                         message: str) -> None:
    entries = results(faulty_runs)
    assert len(entries) == len(EXPECTED_CALLS), [done.describe() for done in faulty_runs]
    entry = entries[turn]
    assert entry["name"] == tool
    assert "result" not in entry, entry
    assert isinstance(entry["error"], str) and message in entry["error"], entry
    assert isinstance(entry["duration_ms"], (int, float))
    if tool == "slowTool":  # the timeout cut the 5 s sleep
        assert 250 <= entry["duration_ms"] < 2000, entry


def test_the_working_call_still_works(faulty_runs: list[Finished]) -> None:
    last = results(faulty_runs)[-1]
    assert last["name"] == "countTool" and "error" not in last
    assert last["result"] == {"count": 21, "double": 42}

