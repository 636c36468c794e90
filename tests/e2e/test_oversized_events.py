"""Issue 13: an event too large for one event-stream message is refused before it is sent.

The SDK frames each event (double base64, two message headers) and refuses a frame over 16 MiB
from inside `send()`; the runner took that for a broken stream and reconnected five times. Now the
session refuses such an event locally: a tool result becomes an error result for the model on the
same stream, and an event that cannot be made small (every toolResult inflated by an override
template) ends the run with one clear error. max_result_bytes (at most 1 MiB) keeps default
templates far below the limit, so an override template that inflates the event is how a test
reaches it; the check is on the encoded event, whatever made it large.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from e2e_helpers import DATA, REPO, Finished, Run, silence, speech, write_wav

TOOL_RESULT = (REPO / "runner/protocol/templates/toolResult.json.j2").read_text()
# 4 million 4-byte characters: 16 MB of JSON, within Jinja's 4 Mi-character render budget.
INFLATE_ALWAYS = '(content ~ ("\U0001F600" * 4000000))'
# Every real result (the table, and the error result that replaces it), but not the sample value
# `check` renders ({"ok": true}): only the run can find it too large.
INFLATE_REAL = '(content ~ ("\U0001F600" * 4000000 if "rows" in content or "tool" in content else ""))'
# Only the table, not the error result that replaces it.
INFLATE_LARGE = '(content ~ ("\U0001F600" * 4000000 if "row 0" in content else ""))'


def run_with(tmp_path: Path, start_run: Callable[..., Run], inflate: str) -> Finished:
    for name in ("oversized.yaml", "oversized_tools.py", "oversized.scenario.yaml"):
        shutil.copy(DATA / name, tmp_path / name)
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "toolResult.json.j2").write_text(
        TOOL_RESULT.replace("{{ content | tojson }}", "{{ " + inflate + " | tojson }}"), encoding="utf-8")
    question = write_wav(tmp_path / "q.wav", [speech("Show the table."), silence(2.5)])
    transcript = tmp_path / "t.jsonl"
    return start_run([tmp_path / "oversized.yaml", "--emulate", tmp_path / "oversized.scenario.yaml",
                      "--input", question, "--output", tmp_path / "out.wav", "--transcript", transcript,
                      "--idle-exit", "1", "--time-limit", "40"], transcript=transcript).finish(timeout_s=60)


def streams_opened(done: Finished) -> int:
    return sum(1 for e in done.entries("session") if e["event"] == "start")


def test_a_result_too_large_for_one_event_is_an_error_result_on_the_same_stream(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    done = run_with(tmp_path, start_run, INFLATE_LARGE)
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stdout + done.stderr
    assert "reconnecting" not in done.stdout + done.stderr, done.describe()
    assert streams_opened(done) == 1, done.describe()
    (result,) = done.entries("tool_result")
    assert "result" not in result and result["error"].startswith(
        "result too large for one event: its toolResult event would be "), result
    assert result["error"].endswith(" bytes (at most 12581888)"), result
    assert result["result_truncated"].startswith('{"rows": ["row 000"'), result
    # The emulator got the JSON error result and answered the turn.
    assert [e["text"] for e in done.entries("assistant")] == ["That failed."], done.describe()
    assert done.transcript[-1]["type"] == "session" and done.transcript[-1]["event"] == "end"


def test_an_event_that_cannot_be_made_small_ends_the_run_with_one_error(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    done = run_with(tmp_path, start_run, INFLATE_REAL)
    assert done.returncode == 1, done.describe()
    assert "Traceback" not in done.stdout + done.stderr
    assert "reconnecting" not in done.stdout + done.stderr, done.describe()
    assert streams_opened(done) == 1, done.describe()
    template = tmp_path / "tpl" / "toolResult.json.j2"
    assert ("agent-run: error: the toolResult event would be" in done.stderr
            and f"more than one event can carry (12581888 bytes); it was not sent (rendered by {template})"
            in done.stderr), done.describe()
    assert done.transcript[-1]["type"] == "session" and done.transcript[-1]["event"] == "end"


def test_a_template_too_large_even_with_the_sample_values_is_refused_by_check_and_at_load(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    done = run_with(tmp_path, start_run, INFLATE_ALWAYS)
    template = tmp_path / "tpl" / "toolResult.json.j2"
    checked = start_run(["check", tmp_path / "oversized.yaml"]).finish(timeout_s=30)
    for result in (done, checked):
        assert result.returncode == 1, result.describe()
        assert "Traceback" not in result.stdout + result.stderr
        expected = (f"{template}:1:1: error: renders a toolResult event of 16000097 bytes from the sample "
                    "values, more than one event can carry (12581888 bytes)")
        assert expected in result.stdout + result.stderr, result.describe()
    assert streams_opened(done) == 0
