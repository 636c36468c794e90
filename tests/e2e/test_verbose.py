"""`-v` shows the runner's own events (tens of lines for a short run); audio chunk by chunk and the
SDK's, HTTP/2's and the emulator's internals only with `--debug`. Both runs go concurrently."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from e2e_helpers import ORDERS, ORDERS_SCENARIO, SAMPLES, Finished, Run

INTERNALS = re.compile(r"^(smithy|hpack|h2|awscrt|asyncio|runner\.emulator)\S*: ", re.MULTILINE)
AUDIO_CHUNK = re.compile(r"^  (<-|->) audio(Output|Input) \d+ bytes$", re.MULTILINE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Finished]]:
    tmp = tmp_path_factory.mktemp("verbose")
    started = {flag: Run([ORDERS, "--emulate", ORDERS_SCENARIO, "--input", SAMPLES / "where_is_my_order.wav",
                          "--output", tmp / f"{flag}.wav", flag]) for flag in ("-v", "--debug")}
    try:
        yield {flag: run.finish() for flag, run in started.items()}
    finally:
        for run in started.values():
            run.kill()


def lines(done: Finished) -> list[str]:
    return (done.stdout + done.stderr).splitlines()


def test_verbose_shows_the_runners_events_in_tens_of_lines(runs: dict[str, Finished]) -> None:
    done = runs["-v"]
    assert done.returncode == 0, done.describe()
    text = done.stdout + done.stderr
    assert 30 < len(lines(done)) < 150, text  # a ~10 s run with one tool call
    # Both directions, the tool round trip, and audio as one line per answer.
    for needle in ("  -> sessionStart", "  <- toolUse trackOrderTool", "  -> toolResult",
                   "  <- contentEnd TEXT END_TURN", "  -> sessionEnd"):
        assert needle in text, needle
    assert re.search(r"^  <- audioOutput x\d+ \(\d+\.\d s\)$", text, re.MULTILINE), text
    assert not INTERNALS.search(text), INTERNALS.search(text)
    assert not AUDIO_CHUNK.search(text)


def test_debug_adds_audio_chunks_and_library_internals(runs: dict[str, Finished]) -> None:
    done = runs["--debug"]
    assert done.returncode == 0, done.describe()
    text = done.stdout + done.stderr
    assert len(lines(done)) > 5 * len(lines(runs["-v"]))
    assert re.search(r"^smithy\S*: ", text, re.MULTILINE) and re.search(r"^runner\.emulator\S*: ", text,
                                                                         re.MULTILINE)
    assert len(AUDIO_CHUNK.findall(text)) > 20
