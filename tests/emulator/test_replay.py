"""The replay's comparison and release logic (sans-IO): what counts as the same input, when a
recorded output is due, and how the first difference reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.emulator.replay import (
    Difference,
    IdMap,
    ReplayError,
    StreamReplay,
    TapeLine,
    Tolerance,
    first_difference,
    load_tape,
    plan_stream,
)

CHUNK = 640  # 20 ms of 16 kHz audio


# -- first_difference ---------------------------------------------------------------------------

def test_equal_events_have_no_difference() -> None:
    event = {"promptName": "p", "content": "hello", "n": 1, "list": [1, {"a": True}]}
    assert first_difference(event, json.loads(json.dumps(event)), IdMap()) is None


def test_ids_are_compared_structurally_not_literally() -> None:
    ids = IdMap()
    assert first_difference({"promptName": "rec-1", "contentName": "rec-2"},
                            {"promptName": "live-A", "contentName": "live-B"}, ids) is None
    # The same recorded id must stay the same live id ...
    assert first_difference({"promptName": "rec-1"}, {"promptName": "live-A"}, ids) is None
    found = first_difference({"promptName": "rec-1"}, {"promptName": "live-C"}, ids, "contentEnd")
    assert found is not None and found.startswith("at contentEnd.promptName: a different id")
    # ... and a live id cannot stand for two recorded ones.
    assert first_difference({"contentName": "rec-3"}, {"contentName": "live-B"}, ids) is not None


def test_ids_in_outputs_become_the_live_ones() -> None:
    ids = IdMap()
    first_difference({"promptName": "rec-1"}, {"promptName": "live-A"}, ids)
    out = {"event": {"textOutput": {"promptName": "rec-1", "contentId": "model-1", "content": "rec-1"}}}
    assert ids.to_live(out) == {"event": {"textOutput": {"promptName": "live-A", "contentId": "model-1",
                                                         "content": "rec-1"}}}


def test_json_in_strings_is_compared_as_json_with_a_path_into_it() -> None:
    recorded = {"content": json.dumps({"orderNumber": "1", "orderStatus": "Shipped"})}
    reordered = {"content": json.dumps({"orderStatus": "Shipped", "orderNumber": "1"})}
    assert first_difference(recorded, reordered, IdMap()) is None
    changed = {"content": json.dumps({"orderNumber": "1", "orderStatus": "Lost"})}
    assert first_difference(recorded, changed, IdMap(), "toolResult") == (
        "at toolResult.content.orderStatus: expected 'Shipped', got 'Lost'")


def test_missing_extra_and_typed_values_are_named() -> None:
    assert first_difference({"a": 1, "b": 2}, {"a": 1}, IdMap()) == "at b: missing (expected 2)"
    assert first_difference({"a": 1}, {"a": 1, "c": "x"}, IdMap()) == "at c: not in the recording (got 'x')"
    assert first_difference({"a": 1}, {"a": "1"}, IdMap()) == "at a: expected 1, got '1'"
    assert first_difference({"a": [1, 2]}, {"a": [1]}, IdMap()) == "at a: expected 2 items, got 1"


def test_long_texts_are_shortened_around_their_first_difference() -> None:
    prompt = "You are a friendly assistant. " * 20
    found = first_difference({"content": prompt + "Be brief."}, {"content": prompt + "Be verbose."},
                             IdMap(), "textInput")
    assert found is not None and len(found) < 250, found
    assert found == ("at textInput.content: expected …'endly assistant. Be brief.', "
                     "got …'endly assistant. Be verbose.'")


# -- StreamReplay -------------------------------------------------------------------------------

def ev(name: str, **body: Any) -> dict[str, Any]:
    return {"event": {name: body}}


def line_in(t: float, name: str, **body: Any) -> TapeLine:
    audio = CHUNK if name == "audioInput" else 0
    if name == "audioInput":
        body["content"] = ""
    return TapeLine(t, "in", ev(name, **body), audio_bytes=audio)


def line_out(t: float, name: str, **body: Any) -> TapeLine:
    return TapeLine(t, "out", ev(name, **body))


def audio_in(t: float) -> TapeLine:
    return line_in(t, "audioInput", promptName="P", contentName="A")


def recorded_stream() -> list[TapeLine]:
    """The runner opens, streams 10 chunks; the model asks for a tool after 6; the runner answers;
    the model speaks 0.5 s after the result; then the runner ends."""
    lines = [line_in(0.0, "sessionStart"), line_in(0.0, "promptStart", promptName="P"),
             line_in(0.01, "contentStart", promptName="P", contentName="A", type="AUDIO")]
    lines += [audio_in(0.02 * i) for i in range(1, 7)]
    lines += [line_out(0.125, "toolUse", promptName="P", toolUseId="T", toolName="lookup")]
    lines += [audio_in(0.02 * i) for i in range(7, 11)]
    lines += [line_in(0.3, "toolResult", promptName="P", contentName="R", toolUseId="T",
                      content='{"ok": true}'),
              line_out(0.8, "textOutput", promptName="P", content="done"),
              line_in(1.0, "sessionEnd"), TapeLine(1.0, "in", end=True),
              line_out(1.01, "completionEnd", promptName="P"), TapeLine(1.02, "out", end=True)]
    return lines


def start(now: float = 100.0, **tolerance: float) -> StreamReplay:
    return StreamReplay(plan_stream(recorded_stream()), number=1, now=now, tolerance=Tolerance(**tolerance))


def opening(replay: StreamReplay, now: float, prompt: str = "live-P") -> None:
    replay.receive("sessionStart", {}, 0, now)
    replay.receive("promptStart", {"promptName": prompt}, 0, now)
    replay.receive("contentStart", {"promptName": prompt, "contentName": "live-A", "type": "AUDIO"}, 0, now)


def chunk(replay: StreamReplay, now: float, prompt: str = "live-P") -> None:
    replay.receive("audioInput", {"promptName": prompt, "contentName": "live-A", "content": "x"}, CHUNK, now)


def names(outgoing: list[Any]) -> list[str]:
    return [next(iter(o.event["event"])) if o.event else ("end" if o.end else "error") for o in outgoing]


def test_an_output_waits_for_as_much_input_audio_as_recorded() -> None:
    replay = start()
    opening(replay, 100.0)
    for i in range(1, 6):
        chunk(replay, 100.0 + i)
        assert replay.due(100.0 + i + 10) == []  # 5 chunks: not yet, however long it waits
    chunk(replay, 106.0)
    assert replay.due(106.0) == []  # then the recorded 5 ms after the 6th chunk
    out = replay.due(106.005)
    assert names(out) == ["toolUse"]
    assert out[0].event["event"]["toolUse"]["promptName"] == "live-P"  # the live id, not "P"


def test_the_answer_follows_the_live_tool_result_after_the_recorded_delay() -> None:
    replay = start()
    opening(replay, 100.0)
    for i in range(1, 11):
        chunk(replay, 100.0 + i * 0.02)
    assert names(replay.due(101.0)) == ["toolUse"]
    assert replay.due(150.0) == []  # a slow tool: nothing comes before its result
    replay.receive("toolResult", {"promptName": "live-P", "contentName": "live-R", "toolUseId": "T",
                                  "content": '{"ok":true}'}, 0, 150.0)
    assert replay.due(150.4) == []
    assert names(replay.due(150.5)) == ["textOutput"]
    assert replay.next_deadline(150.5) == pytest.approx(150.0 + 60)  # the input timeout, from the last input


def test_a_different_tool_result_is_the_first_difference() -> None:
    replay = start()
    opening(replay, 100.0)
    for i in range(1, 11):
        chunk(replay, 100.0 + i * 0.02)
    with pytest.raises(Difference) as caught:
        replay.receive("toolResult", {"promptName": "live-P", "contentName": "live-R", "toolUseId": "T",
                                      "content": '{"ok": false}'}, 0, 101.0)
    assert caught.value.message == ("replay: stream 1, input event #14 (toolResult): "
                                    "at toolResult.content.ok: expected true, got false")


def test_another_event_instead_of_the_recorded_one() -> None:
    replay = start()
    opening(replay, 100.0)
    for i in range(1, 11):
        chunk(replay, 100.0 + i * 0.02)
    with pytest.raises(Difference, match=r"input event #14 \(sessionEnd\): expected toolResult \{"):
        replay.receive("sessionEnd", {}, 0, 101.0)


def test_a_missing_event_is_reported_after_the_audio_tolerance() -> None:
    replay = start(audio_late_s=0.5)  # 25 chunks of 20 ms
    opening(replay, 100.0)
    for i in range(1, 36):
        chunk(replay, 100.0 + i * 0.02)
    with pytest.raises(Difference, match=r"expected toolResult .*recorded after 0\.2 s of input audio\), "
                                         r"still missing after 0\.7 s"):
        chunk(replay, 101.0)


def test_an_event_sent_early_releases_the_outputs_recorded_before_it_within_the_tolerance() -> None:
    replay = start(audio_early_s=0.1)
    opening(replay, 100.0)
    for i in range(1, 7):
        chunk(replay, 100.0 + i * 0.02)
    assert names(replay.due(100.2)) == ["toolUse"]
    # Recorded after 10 chunks; sent after 6 (80 ms less audio, within 0.1 s): accepted.
    replay.receive("toolResult", {"promptName": "live-P", "contentName": "live-R", "toolUseId": "T",
                                  "content": '{"ok": true}'}, 0, 100.2)
    assert names(replay.due(100.7)) == ["textOutput"]


def test_an_event_sent_far_too_early_is_a_difference() -> None:
    replay = start(audio_early_s=0.01)
    opening(replay, 100.0)
    with pytest.raises(Difference, match=r"came after 0\.0 s of input audio; the recording had 0\.2 s "):
        replay.receive("toolResult", {"promptName": "live-P", "contentName": "live-R", "toolUseId": "T",
                                      "content": '{"ok": true}'}, 0, 100.2)


def test_the_end_of_input_releases_the_recorded_ending() -> None:
    replay = start()
    opening(replay, 100.0)
    for i in range(1, 11):
        chunk(replay, 100.0 + i * 0.02)
    replay.due(101.0)
    replay.receive("toolResult", {"promptName": "live-P", "contentName": "live-R", "toolUseId": "T",
                                  "content": '{"ok": true}'}, 0, 101.0)
    replay.receive("sessionEnd", {}, 0, 102.0)
    assert names(replay.due(102.0)) == ["textOutput"]
    replay.input_closed(102.0)
    assert names(replay.due(102.1)) == ["completionEnd", "end"] and replay.finished


def test_ending_early_or_sending_more_than_recorded_is_a_difference() -> None:
    replay = start()
    opening(replay, 100.0)
    with pytest.raises(Difference, match=r"\(the end of input\): expected toolResult"):
        replay.input_closed(100.1)
    replay = StreamReplay(plan_stream(recorded_stream()[:3]), number=2, now=0.0)
    opening(replay, 0.0)
    with pytest.raises(Difference, match=r"stream 2, input event #4 \(contentEnd\): the recording has no "
                                         r"more input events on this stream"):
        replay.receive("contentEnd", {"promptName": "live-P"}, 0, 0.1)


def test_audio_of_another_block_is_a_difference() -> None:
    replay = start()
    opening(replay, 100.0)
    with pytest.raises(Difference, match=r"\(audioInput\): at audioInput.contentName: a different id"):
        replay.receive("audioInput", {"promptName": "live-P", "contentName": "other", "content": "x"},
                       CHUNK, 100.1)


# -- reading a recording ------------------------------------------------------------------------

def test_a_bad_line_is_located(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"t": 0, "stream": 1, "direction": "in", "event": {}}\n{oops\n')
    with pytest.raises(ReplayError, match=rf"^{tmp_path / 'events.jsonl'}:2:2: not JSON"):
        load_tape(tmp_path)
    (tmp_path / "events.jsonl").write_text('{"t": 0, "stream": 1, "direction": "sideways"}\n')
    with pytest.raises(ReplayError, match=r":1:1: every line needs t \(seconds\), stream"):
        load_tape(tmp_path)


def test_streams_are_read_in_order(tmp_path: Path) -> None:
    lines = [{"t": 0.5, "stream": 2, "direction": "out", "accepted": True},
             {"t": 0.0, "stream": 1, "direction": "out", "error": {"kind": "ThrottlingException",
                                                                  "message": "ThrottlingException: slow"}}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    tape = load_tape(tmp_path)
    assert [len(s) for s in tape.streams] == [1, 1]
    assert tape.streams[0][0].error == lines[1]["error"] and tape.streams[1][0].accepted


def test_ignored_paths_are_not_compared() -> None:
    recorded = {"content": json.dumps({"formattedTime": "10:01 AM", "day": "MONDAY"}), "extra": 1}
    later = {"content": json.dumps({"formattedTime": "10:07 AM", "day": "MONDAY"}), "extra": 2}
    assert first_difference(recorded, later, IdMap(), "toolResult") == (
        "at toolResult.content.formattedTime: expected '10:01 AM', got '10:07 AM'")
    assert first_difference(recorded, later, IdMap(), "toolResult",
                            ("toolResult.content.formattedTime", "toolResult.extra")) is None
    assert first_difference(recorded, later, IdMap(), "toolResult", ("toolResult.*",)) is None
    assert first_difference({"a": 1}, {"a": 1, "new": 2}, IdMap(), "x", ("x.new",)) is None


def test_streams_map_to_requests_in_order_and_a_recorded_refusal_is_refused_again(tmp_path: Path) -> None:
    from runner.emulator.api import StreamRequest
    from runner.emulator.replay import ReplayHandler

    refused = {"kind": "ThrottlingException", "message": "ThrottlingException: Too many requests"}
    lines = [{"t": 0.0, "stream": 1, "direction": "out", "error": refused},
             {"t": 0.1, "stream": 2, "direction": "out", "error": {"kind": "EndpointUnreachable",
                                                                  "message": "no route"}},
             {"t": 0.5, "stream": 3, "direction": "out", "accepted": True}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    handler = ReplayHandler(load_tape(tmp_path))
    first = handler.admit(StreamRequest("m", "r1", 1))
    assert first is not None and (first.status, first.error_type, first.message) == (
        429, "ThrottlingException", "Too many requests")
    # Stream 2 never reached the service (no network): the next request is stream 3.
    assert handler.admit(StreamRequest("m", "r2", 2)) is None
    assert handler._assigned["r2"] is not None and handler._assigned["r2"].number == 3
    assert handler.admit(StreamRequest("m", "r3", 3)) is None and handler._assigned["r3"] is None
