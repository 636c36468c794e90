"""Issue 13: tools whose failures resist being reported still become error results, and the run goes on.

tests/data/e2e/evil.yaml calls, in one turn, tools that raise an exception whose __str__ raises
or returns an int, raise StopIteration (sync and async) or CancelledError, call sys.exit() with an
unprintable code, return an object whose repr raises, a dict with a tuple key, a 5,001-digit int,
text with a lone surrogate; then one that works. Their module has a module-level __getattr__ that
raises, so probing it with hasattr() broke `check` and a run. Each step of the scenario waits for
its tool's result, so the closing answer proves every result reached the emulator.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_helpers import DATA, Finished, Run, silence, speech, write_wav

EXPECTED = [
    ("unprintableTool", "Unprintable: <Unprintable that cannot be printed: ValueError>"),
    ("notAStringTool", "NotAString: <NotAString that cannot be printed: TypeError>"),
    ("stopSyncTool", "StopIteration"),
    ("stopAsyncTool", "RuntimeError: coroutine raised StopIteration"),
    ("cancelledTool", "CancelledError raised by the tool"),
    ("exitOpaqueTool", "the tool called sys.exit(<Opaque that cannot be printed: RuntimeError>)"),
    ("opaqueResultTool", "result is not JSON-serialisable: Object of type Opaque is not JSON serializable"),
    ("tupleKeysTool", "result is not JSON-serialisable: keys must be str, int, float, bool or None"),
    ("hugeIntTool", "result is not JSON-serialisable: Exceeds the limit (4300 digits)"),
]


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    tmp = tmp_path_factory.mktemp("evil")
    question = write_wav(tmp / "go.wav", [speech("Go."), silence(3.0)])
    transcript = tmp / "t.jsonl"
    run = Run([DATA / "evil.yaml", "--emulate", DATA / "evil.scenario.yaml", "--input", question,
               "--output", tmp / "out.wav", "--transcript", transcript, "--idle-exit", "1",
               "--time-limit", "40"], transcript=transcript)
    try:
        yield run.finish(timeout_s=60)
    finally:
        run.kill()


def test_every_unprintable_failure_is_an_error_result_and_the_turn_is_answered(evil_run: Finished) -> None:
    done = evil_run
    assert done.returncode == 0, done.describe()
    assert "Traceback" not in done.stdout + done.stderr, done.describe()
    results = done.entries("tool_result")
    errors = [(e["name"], e.get("error")) for e in results[:len(EXPECTED)]]
    assert [name for name, _ in errors] == [name for name, _ in EXPECTED], done.describe()
    for (name, error), (_, expected) in zip(errors, EXPECTED, strict=True):
        assert isinstance(error, str) and error.startswith(expected), (name, error)
    # The lone surrogate, which no strict JSON parser takes, arrives as U+FFFD; the last tool works.
    assert results[-2]["name"] == "surrogateTool" and results[-2]["result"] == {"text": "half a pair: \ufffd"}
    assert results[-1]["name"] == "fineTool" and results[-1]["result"] == {"ok": True}
    assert [e["text"] for e in done.entries("assistant")] == ["All answered."], done.describe()
    assert done.transcript[-1]["type"] == "session" and done.transcript[-1]["event"] == "end"


def test_a_module_getattr_that_raises_is_a_located_error_at_check_and_at_run(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    shutil.copy(DATA / "evil_tools.py", tmp_path / "evil_tools.py")
    agent = tmp_path / "agent.yaml"
    agent.write_text((DATA / "evil.yaml").read_text().replace("evil_tools:fine", "evil_tools:missing"))
    checked = start_run(["check", agent])
    ran = start_run([agent, "--emulate", "--input", tmp_path / "none.wav"])
    for done in (checked.finish(timeout_s=30), ran.finish(timeout_s=30)):
        assert done.returncode == 1, done.describe()
        assert "Traceback" not in done.stdout + done.stderr, done.describe()
        assert ("tools[10].handler: handler module 'evil_tools': looking up 'missing' raised RuntimeError: "
                "evil_tools has no missing and says so rudely") in done.stdout + done.stderr, done.describe()
        assert f"{agent}:" in done.stdout + done.stderr
