"""The README's offline main command: the orders agent answers a recorded question with a tool
round trip, through the real SDK and the in-process emulator, and keeps a WAV and a transcript."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    ORDERS,
    ORDERS_SCENARIO,
    OUTPUT_RATE,
    SAMPLES,
    SPEECH_DBFS,
    Finished,
    Run,
    dbfs,
    read_output,
    speech_seconds,
    types,
)

Check = Callable[[dict[str, Any]], bool]


def in_order(entries: Sequence[dict[str, Any]], checks: Sequence[tuple[str, Check]]) -> list[str]:
    """The names of the checks not matched, each looked for after the previous match."""
    position = 0
    missing = []
    for name, check in checks:
        for index in range(position, len(entries)):
            if check(entries[index]):
                position = index + 1
                break
        else:
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def orders_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Finished, Path]]:
    tmp = tmp_path_factory.mktemp("orders")
    answer, transcript = tmp / "answer.wav", tmp / "t.jsonl"
    run = Run([ORDERS, "--emulate", ORDERS_SCENARIO, "--input", SAMPLES / "where_is_my_order.wav",
               "--output", answer, "--transcript", transcript, "--idle-exit", "1", "--time-limit", "30"],
              transcript=transcript)
    try:
        yield run.finish(), answer
    finally:
        run.kill()


def test_orders_agent_answers_a_wav_question_with_a_tool_call(orders_run: tuple[Finished, Path]) -> None:
    done, _ = orders_run
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stderr
    missing = in_order(done.transcript, [
        ("session start", lambda e: e["type"] == "session" and e["event"] == "start"),
        # What was said, as the emulator heard it (with the asr extra: "Where is my order 12,345?"),
        # else the scenario's `user:` text.
        ("user", lambda e: e["type"] == "user" and e["text"].casefold().startswith("where is my order")),
        ("tool_call", lambda e: e["type"] == "tool_call" and e["name"] == "trackOrderTool"
         and e["input"] == {"orderId": "12345"}),
        ("tool_result", lambda e: e["type"] == "tool_result" and e["name"] == "trackOrderTool"
         and "error" not in e and e["result"]["orderNumber"] == "12345" and e["duration_ms"] >= 0),
        ("assistant", lambda e: e["type"] == "assistant" and "12345" in e["text"]),
        ("usage", lambda e: e["type"] == "usage" and e["total_tokens"] > 0),
        ("session end", lambda e: e["type"] == "session" and e["event"] == "end"),
    ])
    assert not missing, f"missing in order: {missing}\n{done.describe()}"
    call, = done.entries("tool_call")
    result, = done.entries("tool_result")
    assert result["tool_use_id"] == call["tool_use_id"]
    # The console shows the same conversation.
    assert "you:       Where is my order" in done.stdout and "trackOrderTool" in done.stdout


def test_transcript_ends_with_the_session_end(orders_run: tuple[Finished, Path]) -> None:
    done, _ = orders_run
    # user, assistant, tool_call, tool_result, usage, assistant, usage, session end (the turn and
    # summary entries, runner.telemetry, come in between)
    said = [t for t in types(done.transcript) if t not in ("turn", "summary")]
    assert said[-3:] == ["assistant", "usage", "session"], types(done.transcript)
    assert done.transcript[-1]["event"] == "end"


def test_the_spoken_answer_is_written_to_a_wav(orders_run: tuple[Finished, Path]) -> None:
    done, answer = orders_run
    assert done.returncode == 0, done.describe()
    wav = read_output(answer)
    assert (wav.rate, wav.channels) == (OUTPUT_RATE, 1)
    # "Let me check that order for you." + "Your order 12345 is <status>.": several seconds.
    assert 3.0 < wav.seconds < 15.0, wav.seconds
    assert dbfs(wav.samples) > SPEECH_DBFS - 5, dbfs(wav.samples)
    assert speech_seconds(wav.samples, wav.rate) > 2.0
