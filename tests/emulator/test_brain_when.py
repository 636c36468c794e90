"""The emulated model choosing turns by what it heard (`when:`), driven synchronously."""

from __future__ import annotations

import json
import logging

import pytest

from runner.emulator.brain import Script
from runner.emulator.outputs import INTERRUPTED_MARKER
from runner.emulator.scenario import parse_scenario
from tests.emulator.fakes import (
    BrainDriver,
    audio_start,
    content_end,
    opening,
    silence,
    text_input,
    text_start,
    tone,
    tool_result,
    tool_start,
)

SHOP = parse_scenario({
    "turns": [
        {"when": {"regex": r"order (?:number )?(?P<order_id>\d+)"}, "assistant": [
            {"tool": "trackOrderTool", "input": {"orderId": "{{ match.order_id }}", "asked": "{{ user }}"}},
            {"say": "Order {{ match.order_id }} is {{ tool_result.status }}."}]},
        {"when": {"words": ["opening hours"]}, "assistant": [{"say": "We open at nine."}]},
        {"user": "Hello.", "assistant": [{"say": "Welcome to the shop."}]},
        {"when": "story", "assistant": [{"say": "Once upon a time there was a very long story that "
                                                "nobody wanted to hear, and it went on and on."}]},
    ],
    "fallback": [{"say": "Sorry, I didn't catch that."}],
})


def started(scenario: object = SHOP, **settings: object) -> BrainDriver:
    driver = BrainDriver.make(scenario, **settings)  # type: ignore[arg-type]
    driver.send(*opening(tools=("trackOrderTool",)), audio_start())
    return driver


def type_text(driver: BrainDriver, text: str, name: str = "t") -> None:
    driver.send(text_start(name, "USER", True), text_input(name, text), content_end(name))


def assistant(driver: BrainDriver) -> list[str]:
    """The assistant's FINAL texts (each is also sent SPECULATIVE first), interruptions left out."""
    final = {b["contentId"] for b in driver.bodies("contentStart")
             if b["role"] == "ASSISTANT" and b["type"] == "TEXT" and "FINAL" in b["additionalModelFields"]}
    return [b["content"] for b in driver.bodies("textOutput")
            if b["contentId"] in final and b["content"] != INTERRUPTED_MARKER]


def answer_tool(driver: BrainDriver, result: dict[str, str]) -> dict[str, str]:
    tool_use = driver.bodies("toolUse")[-1]
    driver.send(tool_start("r", tool_use["toolUseId"]), tool_result("r", json.dumps(result)),
                content_end("r"))
    arguments: dict[str, str] = json.loads(tool_use["content"])
    return arguments


def test_typed_text_picks_the_matching_turn_and_captures_reach_the_tool_input() -> None:
    driver = started()
    type_text(driver, "Hi, where is ORDER number 4711?")
    assert answer_tool(driver, {"status": "shipped"}) == {"orderId": "4711",
                                                           "asked": "Hi, where is ORDER number 4711?"}
    driver.advance(3)
    type_text(driver, "And order 12?", "t2")  # the same turn again, another capture
    assert answer_tool(driver, {"status": "lost"}) == {"orderId": "12", "asked": "And order 12?"}
    driver.advance(3)
    assert assistant(driver) == ["Order 4711 is shipped.", "Order 12 is lost."]
    assert driver.brain.record.chosen == ["turns[0]", "turns[0]"]


def test_unmatched_text_plays_the_in_order_turns_then_the_fallback() -> None:
    driver = started()
    for i, text in enumerate(["good morning", "What are your opening hours?", "hmm", "and now?"]):
        type_text(driver, text, f"t{i}")
        driver.advance(3)
    assert assistant(driver) == ["Welcome to the shop.", "We open at nine.", "Sorry, I didn't catch that.",
                                 "Sorry, I didn't catch that."]
    assert driver.brain.record.chosen == ["turns[2]", "turns[1]", "fallback", "fallback"]
    # Interactive text is its own transcript, whatever the turn's `user:` says.
    assert driver.brain.record.user_turns[0] == "good morning"


def test_speech_without_a_transcript_plays_in_order_and_says_once_why(
        caplog: pytest.LogCaptureFixture) -> None:
    driver = started()
    with caplog.at_level(logging.INFO, "runner.emulator"):
        for _ in range(2):
            driver.stream_audio(tone(0.6) + silence(0.8))
            driver.advance(3)
    assert assistant(driver) == ["Welcome to the shop.", "Sorry, I didn't catch that."]
    assert driver.brain.record.user_turns == ["Hello.", "(0.6 seconds of speech)"]
    warnings = [r.getMessage() for r in caplog.records if "`when:`" in r.getMessage()]
    assert len(warnings) == 1 and "install the `asr` extra" in warnings[0]


def test_no_warning_for_speech_when_no_turn_has_when(caplog: pytest.LogCaptureFixture) -> None:
    driver = started(parse_scenario({"turns": [{"user": "Hi.", "assistant": [{"say": "Hello."}]}]}))
    with caplog.at_level(logging.INFO, "runner.emulator"):
        driver.stream_audio(tone(0.6) + silence(0.8))
        driver.advance(3)
    assert assistant(driver) == ["Hello."]
    assert not [r for r in caplog.records if "`when:`" in r.getMessage()]


def test_an_interrupted_matched_turn_does_not_use_up_an_in_order_turn() -> None:
    driver = started(speed=1.0)
    type_text(driver, "tell me a story")
    driver.advance(0.5)
    assert driver.bodies("audioOutput")
    driver.stream_audio(tone(0.5) + silence(0.8))  # talks over it: interrupts, then a turn of its own
    driver.advance(5)
    assert INTERRUPTED_MARKER in [b["content"] for b in driver.bodies("textOutput")]
    # The speech after the interruption gets the first in-order turn: the story did not use it up.
    assert driver.brain.record.chosen == ["turns[3]", "turns[2]"]
    assert driver.brain.conversation.played == 2 and driver.brain.conversation.next_turn == 1


def test_a_tool_input_that_fails_to_render_is_sent_with_the_unknown_parts_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    # `tool_result` of a previous call is what the template expects; there is none in this turn.
    scenario = parse_scenario({"turns": [{"when": "check", "assistant": [
        {"tool": "trackOrderTool", "input": {"orderId": "#{{ tool_result.id }}"}}]}]})
    driver = started(scenario)
    with caplog.at_level(logging.WARNING, "runner.emulator"):
        type_text(driver, "check it")
    assert json.loads(driver.bodies("toolUse")[0]["content"]) == {"orderId": "#"}
    assert any("failed to render" in r.getMessage() for r in caplog.records)


def test_each_conversation_keeps_its_own_in_order_position() -> None:
    script = Script(SHOP)
    first, second = started(script=script), started(script=script)
    type_text(first, "hi")
    first.advance(3)
    type_text(second, "hi")
    second.advance(3)
    assert assistant(first) == assistant(second) == ["Welcome to the shop."]


def test_speech_with_a_transcript_matches_like_text() -> None:
    # What an ASR hook supplies: the words of an utterance (speech_s set) are matched as typed text.
    conversation = Script(SHOP).conversation_for([])[0]
    choice, number = conversation.choose("where is order 99", speech_s=1.4)
    assert (choice.label, dict(choice.match), number) == ("turns[0]", {"order_id": "99"}, 1)
    choice, _ = conversation.choose(None, speech_s=1.4)
    assert choice.label == "turns[2]"
