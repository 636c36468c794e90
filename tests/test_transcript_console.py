"""The transcript and the console survive outputs that fail: a full disk, a reader that went away."""

from __future__ import annotations

import io
import json
from pathlib import Path

from runner.console import Console
from runner.transcript import TRANSCRIPT_TYPES, Transcript


def test_a_full_device_sets_failure_and_never_raises() -> None:
    with Transcript(Path("/dev/full")) as transcript:
        transcript.write("session", event="start")
        transcript.write("user", text="hello")
    assert transcript.failure == "cannot write transcript /dev/full: No space left on device"
    assert [e["type"] for e in transcript.entries] == ["session", "user"]  # kept in memory


def test_lines_are_whole_json(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with Transcript(path, clock=lambda: 1.0) as transcript:
        transcript.write("greeting", text="Say hello")
        transcript.write("assistant", text="Hello ✓")
    assert transcript.failure is None
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"type": "greeting", "ts": 1.0, "text": "Say hello"},
        {"type": "assistant", "ts": 1.0, "text": "Hello ✓"}]
    assert "greeting" in TRANSCRIPT_TYPES


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


def test_console_falls_silent_when_its_reader_goes_away() -> None:
    console = Console(stream=ClosedPipe())
    console.info("first")
    assert console.gone
    console.assistant("still running")  # no exception
    console.raw("<-", "event")


def test_verbose_shows_audio_chunks_only_with_debug() -> None:
    out = io.StringIO()
    Console(verbose=True, stream=out).raw("<-", "audioOutput 10 bytes", chunk=True)
    assert out.getvalue() == ""
    Console(debug=True, stream=out).raw("<-", "audioOutput 10 bytes", chunk=True)
    assert out.getvalue() == "  <- audioOutput 10 bytes\n"


def test_text_with_lone_surrogates_is_written_as_json_escapes(tmp_path: Path) -> None:
    # A tool result or the model's arguments can hold "\ud800" (no UTF-8 form): the line stays
    # valid JSON Lines, and the console prints it escaped instead of falling silent.
    path = tmp_path / "t.jsonl"
    with Transcript(path) as transcript:
        transcript.write("tool_result", name="t", result={"text": "half \ud800"})
        transcript.write("user", text="after")
    lines = path.read_bytes().decode("utf-8").splitlines()
    assert json.loads(lines[0])["result"] == {"text": "half \ud800"}
    assert json.loads(lines[1])["text"] == "after"
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    console = Console(stream=out)
    console.info("half \ud800")
    console.info("after")
    out.seek(0)
    assert out.read() == "half \\ud800\nafter\n"


def test_listeners_see_entries_and_a_failing_one_breaks_nothing() -> None:
    seen: list[tuple[str, str]] = []

    def before(kind: str, fields: dict[str, object]) -> None:
        seen.append(("before", kind))

    def broken(entry: dict[str, object]) -> None:
        raise RuntimeError("a listener bug")

    transcript = Transcript(None)
    transcript.listen(lambda entry: seen.append(("after", str(entry["type"]))), before=before)
    transcript.listen(broken)
    transcript.write("turn", turn=1)
    transcript.write("summary", turns=1)
    assert seen == [("before", "turn"), ("after", "turn"), ("before", "summary"), ("after", "summary")]
    assert [e["type"] for e in transcript.entries] == ["turn", "summary"]


def test_turn_lines_need_verbose_and_the_summary_is_hidden_only_by_quiet() -> None:
    for kwargs, turn_shown, summary_shown in (({}, False, True), ({"verbose": True}, True, True),
                                              ({"quiet": True, "verbose": True}, False, False)):
        out = io.StringIO()
        console = Console(stream=out, **kwargs)
        console.turn("turn 1 (speech); end of speech -> audio 812 ms")
        console.turn_summary(["summary: 1 turn (p50 / p95)"])
        assert ("[turn 1 (speech)" in out.getvalue()) is turn_shown, kwargs
        assert ("summary: 1 turn" in out.getvalue()) is summary_shown, kwargs
