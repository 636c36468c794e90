"""The sans-IO model behaviour, driven synchronously with a stepped clock."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from runner.emulator.api import StreamRequest
from runner.emulator.brain import (
    INVALID_EVENT_BYTES,
    MODEL_TIMEOUT,
    STREAM_ERROR,
    ResetStream,
    Script,
)
from runner.emulator.nova import NovaConfig, NovaHandler
from runner.emulator.outputs import INTERRUPTED_MARKER
from runner.emulator.scenario import parse_scenario
from runner.emulator.validation import INPUT_TIMEOUT, INVALID_INPUT, TOOL_PARSE
from tests.emulator.fakes import (
    V1,
    BrainDriver,
    MemoryStream,
    audio_input,
    audio_start,
    content_end,
    ev,
    fake_speech,
    opening,
    silence,
    text_input,
    text_start,
    tone,
    tool_result,
    tool_start,
)

ORDER_SCENARIO = parse_scenario({"turns": [
    {"user": "Where is my order 12345?", "assistant": [
        {"tool": "trackOrderTool", "input": {"orderId": "12345"}},
        {"say": "Your order {{ tool_result.orderId }} is {{ tool_result.status }}."}]},
    {"user": "Thanks, bye.", "assistant": [{"say": "Goodbye!"}]},
]})


def started(driver: BrainDriver, tools: tuple[str, ...] = (), rate: int = 16000) -> BrainDriver:
    driver.send(*opening(tools=tools, rate=rate), audio_start())
    return driver


def speak(driver: BrainDriver, seconds: float = 1.0) -> None:
    driver.stream_audio(tone(seconds) + silence(0.8))


def text_contents(driver: BrainDriver, role: str | None = None) -> list[str]:
    return [b["content"] for b in driver.bodies("textOutput") if role is None or b["role"] == role]


def stages(driver: BrainDriver) -> list[tuple[str, str, Any]]:
    """(type, role, generationStage) of every contentStart."""
    out = []
    for body in driver.bodies("contentStart"):
        fields = body.get("additionalModelFields")
        out.append((body["type"], body["role"], json.loads(fields)["generationStage"] if fields else None))
    return out


def test_default_behaviour_reports_speech_length() -> None:
    driver = started(BrainDriver.make())
    speak(driver, 1.2)
    driver.advance(3)
    assert driver.names()[0] == "completionStart"
    user, assistant = text_contents(driver, "USER"), text_contents(driver, "ASSISTANT")
    assert user == ["(1.2 seconds of speech)"]
    assert assistant == ["I heard you speak for 1.2 seconds."] * 2  # SPECULATIVE then FINAL
    assert stages(driver) == [("TEXT", "USER", "FINAL"), ("TEXT", "ASSISTANT", "SPECULATIVE"),
                              ("AUDIO", "ASSISTANT", None), ("TEXT", "ASSISTANT", "FINAL")]
    ends = [(b["type"], b["stopReason"]) for b in driver.bodies("contentEnd")]
    assert ends == [("TEXT", "PARTIAL_TURN"), ("TEXT", "PARTIAL_TURN"), ("AUDIO", "END_TURN"),
                    ("TEXT", "END_TURN")]
    assert driver.brain.record.user_turns == ["(1.2 seconds of speech)"]


def test_every_output_event_carries_the_ids() -> None:
    driver = started(BrainDriver.make())
    speak(driver)
    driver.advance(3)
    driver.send(content_end("audio"), ev("promptEnd", promptName="p1"))
    assert driver.names()[-1] == "completionEnd"
    for event in driver.events:
        (name, body), = event["event"].items()
        assert body["promptName"] == "p1" and body["sessionId"] == "id1" and body["completionId"] == "id2"
        if name in ("contentStart", "textOutput", "audioOutput", "contentEnd", "toolUse"):
            assert body["contentId"].startswith("id")
    audio_ids = {b["contentId"] for b in driver.bodies("audioOutput")}
    assert len(audio_ids) == 1


def test_audio_is_at_the_output_rate_and_faster_than_real_time() -> None:
    driver = started(BrainDriver.make(speed=4.0), rate=24000)
    driver.send(text_start("x", "USER", True), text_input("x", "hello there"), content_end("x"))
    start = driver.now
    driver.advance(5)
    pcm = b"".join(base64.b64decode(b["content"]) for b in driver.bodies("audioOutput"))
    # fake speech: 50 ms per character of "You said: hello there" (21 chars) at 24 kHz.
    assert len(pcm) == int(0.05 * 21 * 24000) * 2
    audio_start_body = next(b for b in driver.bodies("contentStart") if b["type"] == "AUDIO")
    assert audio_start_body["audioOutputConfiguration"]["sampleRateHertz"] == 24000
    assert text_contents(driver, "USER") == ["hello there"]
    del start


def test_pacing_spreads_chunks_at_speed_factor() -> None:
    driver = started(BrainDriver.make(speed=2.0, audio_chunk_ms=100))
    driver.send(text_start("x", "USER", True), text_input("x", "abcdefghij"), content_end("x"))
    # "You said: abcdefghij" = 20 chars = 1.0 s = 10 chunks; at 2x the last goes out at 0.45 s.
    assert len(driver.bodies("audioOutput")) == 1
    driver.advance(0.3)
    assert 5 <= len(driver.bodies("audioOutput")) <= 7
    driver.advance(0.3)
    assert len(driver.bodies("audioOutput")) == 10


def test_usage_events_are_cumulative_with_deltas() -> None:
    driver = started(BrainDriver.make())
    speak(driver)
    driver.advance(3)
    usages = driver.bodies("usageEvent")
    assert len(usages) >= 2
    running = 0
    for usage in usages:
        delta = usage["details"]["delta"]
        running += sum(delta[d][k] for d in ("input", "output") for k in ("speechTokens", "textTokens"))
        assert usage["totalTokens"] == running == usage["totalInputTokens"] + usage["totalOutputTokens"]


def test_scripted_tool_round_trip() -> None:
    driver = started(BrainDriver.make(ORDER_SCENARIO), tools=("trackOrderTool",))
    speak(driver)
    tool_use = driver.bodies("toolUse")
    assert len(tool_use) == 1
    assert tool_use[0]["toolName"] == "trackOrderTool"
    assert json.loads(tool_use[0]["content"]) == {"orderId": "12345"}
    assert [b["stopReason"] for b in driver.bodies("contentEnd") if b["type"] == "TOOL"] == ["TOOL_USE"]
    assert text_contents(driver, "USER") == ["Where is my order 12345?"]
    driver.advance(2)
    assert not driver.bodies("audioOutput")  # waiting for the result
    tool_use_id = tool_use[0]["toolUseId"]
    driver.send(tool_start("r", tool_use_id), tool_result("r", '{"orderId": "12345", "status": "shipped"}'),
                content_end("r"))
    driver.advance(3)
    assert "Your order 12345 is shipped." in text_contents(driver, "ASSISTANT")
    assert driver.brain.record.tool_results[0].content == {"orderId": "12345", "status": "shipped"}
    speak(driver)
    driver.advance(2)
    assert text_contents(driver, "ASSISTANT")[-1] == "Goodbye!"
    assert driver.brain.record.user_turns == ["Where is my order 12345?", "Thanks, bye."]


def test_barge_in_interrupts_and_drops_the_rest() -> None:
    scenario = parse_scenario({"turns": [{"user": "Tell me a story.", "assistant": [
        {"say": "Once upon a time there was a very long story that nobody wanted to hear."},
        {"say": "And it went on."}]}]})
    driver = started(BrainDriver.make(scenario, speed=4.0))
    speak(driver)
    driver.advance(0.5)
    sent_before = len(driver.bodies("audioOutput"))
    assert sent_before > 0
    driver.stream_audio(tone(0.5))  # the user talks over the assistant
    assert INTERRUPTED_MARKER in text_contents(driver, "ASSISTANT")
    interrupted = [(b["type"], b["stopReason"]) for b in driver.bodies("contentEnd")
                   if b["stopReason"] == "INTERRUPTED"]
    assert interrupted == [("AUDIO", "INTERRUPTED"), ("TEXT", "INTERRUPTED")]
    count = len(driver.bodies("audioOutput"))
    driver.stream_audio(silence(0.8))
    driver.advance(5)
    assert "And it went on." not in text_contents(driver)
    # The interrupting speech is the next user turn (no script left: the default answer).
    assert driver.brain.record.user_turns[-1] == "(0.5 seconds of speech)"
    assert driver.brain.record.interruptions == 1
    assert len(driver.bodies("audioOutput")) > count


def test_speech_after_playback_does_not_interrupt() -> None:
    driver = started(BrainDriver.make())
    driver.send(text_start("x", "USER", True), text_input("x", "hi"), content_end("x"))
    driver.advance(5)  # "You said: hi" = 0.6 s of audio, long finished playing
    speak(driver)
    assert INTERRUPTED_MARKER not in text_contents(driver)
    assert driver.brain.record.interruptions == 0


def test_speech_during_tool_wait_is_queued_not_an_interruption() -> None:
    driver = started(BrainDriver.make(ORDER_SCENARIO), tools=("trackOrderTool",))
    speak(driver)
    speak(driver)  # second utterance while waiting for the tool
    assert driver.brain.record.user_turns == ["Where is my order 12345?"]
    tool_use_id = driver.bodies("toolUse")[0]["toolUseId"]
    driver.send(tool_start("r", tool_use_id), tool_result("r", '{"orderId": "1", "status": "lost"}'),
                content_end("r"))
    driver.advance(5)
    assert driver.brain.record.user_turns == ["Where is my order 12345?", "Thanks, bye."]


def test_validation_error_ends_the_stream() -> None:
    driver = started(BrainDriver.make())
    driver.send(tool_start("t", "never-issued"))
    exc = driver.exception()
    assert exc is not None and exc.kind == "validationException"
    assert driver.brain.done and driver.brain.record.ended == "validation"
    driver.send(audio_input(bytes(64)))  # ignored once done
    assert driver.brain.record.input_events[-1] == "audioInput" or driver.brain.done


def test_tool_parsing_error_message() -> None:
    driver = started(BrainDriver.make(ORDER_SCENARIO), tools=("trackOrderTool",))
    speak(driver)
    tool_use_id = driver.bodies("toolUse")[0]["toolUseId"]
    driver.send(tool_start("r", tool_use_id), tool_result("r", "shipped"))
    exc = driver.exception()
    events = len(driver.brain.record.input_events) + 1
    assert exc is not None and exc.message == f"{TOOL_PARSE} (input event #{events}: toolResult)"


def test_time_limit() -> None:
    driver = started(BrainDriver.make(time_limit_s=2.0))
    driver.stream_audio(silence(3.0))
    exc = driver.exception()
    assert exc is not None and (exc.kind, exc.message) == ("modelTimeoutException", MODEL_TIMEOUT)
    assert driver.brain.record.ended == "time-limit"


def test_scenario_time_limit_shortens_the_stream() -> None:
    driver = started(BrainDriver.make(parse_scenario({"faults": {"time_limit_s": 1}})))
    driver.stream_audio(silence(1.5))
    exc = driver.exception()
    assert exc is not None and exc.kind == "modelTimeoutException"


def test_input_timeout() -> None:
    driver = started(BrainDriver.make(input_timeout_s=0.5))
    driver.advance(1.0)
    exc = driver.exception()
    assert exc is not None and (exc.kind, exc.message) == ("validationException", INPUT_TIMEOUT)


def test_reset_fault_fires_once_per_emulator() -> None:
    script = Script(parse_scenario({"faults": {"reset_after_events": 7}}))
    first = BrainDriver.make(script=script)
    started(first)
    first.send(audio_input(bytes(64)))
    assert any(isinstance(a, ResetStream) for a in first.others)
    assert first.brain.record.ended == "reset" and len(first.brain.record.input_events) == 7
    second = started(BrainDriver.make(script=script))
    second.send(audio_input(bytes(64)), audio_input(bytes(64)))
    assert not second.brain.done


def test_throttle_fault_refuses_first_connects() -> None:
    script = Script(parse_scenario({"faults": {"throttle_connects": 2}}))
    assert [script.admit() for _ in range(4)] == [False, False, True, True]


def history_of(*messages: tuple[str, str]) -> list[dict[str, Any]]:
    """History blocks (non-interactive USER/ASSISTANT text), as a continuation replays them."""
    events: list[dict[str, Any]] = []
    for i, (role, text) in enumerate(messages):
        events += [text_start(f"h{i}", role), text_input(f"h{i}", text), content_end(f"h{i}")]
    return events


def resumed(driver: BrainDriver, *messages: tuple[str, str], tools: tuple[str, ...] = ()) -> BrainDriver:
    driver.send(*opening(tools=tools), *history_of(*messages), audio_start())
    return driver


def test_stream_error_mid_turn_then_turn_replays_on_next_stream() -> None:
    scenario = parse_scenario({"turns": [{"user": "one", "assistant": [{"say": "first"}]},
                                         {"user": "two", "assistant": [{"say": "second"}]}],
                               "faults": {"stream_error_at_turn": 2}})
    script = Script(scenario)
    first = started(BrainDriver.make(script=script))
    speak(first)
    first.advance(3)
    speak(first)
    exc = first.exception()
    assert exc is not None and (exc.kind, exc.message) == ("modelStreamErrorException", STREAM_ERROR)
    assert first.brain.record.user_turns == ["one", "two"]  # USER transcript came, then the error
    # The client reconnects and replays what it heard: the interrupted turn plays again.
    second = resumed(BrainDriver.make(script=script), ("USER", "one"), ("ASSISTANT", "first"))
    speak(second)
    second.advance(3)
    assert text_contents(second, "ASSISTANT")[-1] == "second"
    assert second.brain.record.resumed and second.brain.record.conversation == 1

def test_invalid_bytes_fault() -> None:
    driver = started(BrainDriver.make(parse_scenario({"faults": {"invalid_bytes_at_turn": 1}})))
    speak(driver)
    assert driver.raw_sent() == INVALID_EVENT_BYTES
    assert driver.ended() and driver.brain.record.ended == "invalid-bytes"


def test_a_continuation_resumes_its_conversation_and_a_new_stream_starts_from_the_top() -> None:
    script = Script(ORDER_SCENARIO)
    first = started(BrainDriver.make(script=script), tools=("trackOrderTool",))
    speak(first)
    tool_use_id = first.bodies("toolUse")[0]["toolUseId"]
    first.send(tool_start("r", tool_use_id), tool_result("r", '{"orderId": "1", "status": "ok"}'),
               content_end("r"))
    first.advance(3)
    # Another client, no history: its own conversation, from the first turn.
    other = started(BrainDriver.make(script=script), tools=("trackOrderTool",))
    speak(other)
    assert other.brain.record.user_turns == ["Where is my order 12345?"]
    assert other.brain.record.conversation == 2 and not other.brain.record.resumed
    # The first client's next stream replays its history (merged, as clients merge same-role
    # messages): it resumes its own conversation at turn 2.
    second = resumed(BrainDriver.make(script=script),
                     ("USER", "Where is my order 12345?"), ("ASSISTANT", "Your order 1 is ok."),
                     tools=("trackOrderTool",))
    speak(second)
    second.advance(3)
    assert second.brain.record.user_turns == ["Thanks, bye."]
    assert second.brain.record.conversation == 1 and second.brain.record.resumed


def test_history_that_matches_no_conversation_starts_a_new_one() -> None:
    script = Script(ORDER_SCENARIO)
    driver = resumed(BrainDriver.make(script=script), ("USER", "Something else entirely."))
    speak(driver)
    assert driver.brain.record.user_turns == ["Where is my order 12345?"]
    assert not driver.brain.record.resumed


def test_a_tool_the_session_did_not_declare_is_never_called() -> None:
    scenario = parse_scenario({"turns": [{"user": "q", "assistant": [
        {"tool": "trackOrderTool", "input": {"orderId": "1"}}, {"say": "Done."}]}]})
    for tools in ((), ("otherTool",)):
        driver = started(BrainDriver.make(scenario), tools=tools)
        speak(driver)
        driver.advance(3)
        assert driver.bodies("toolUse") == []
        assert text_contents(driver, "ASSISTANT") == ["Done.", "Done."]
        assert driver.exception() is None


@pytest.mark.parametrize(("result", "spoken"), [
    ('"shipped"', "shipped"),  # a JSON string, where the scenario expected an object
    ('{"text": "It shipped yesterday."}', '{"text": "It shipped yesterday."}'),  # another shape
    ("[1, 2]", "[1, 2]"),
])
def test_a_tool_result_of_another_shape_is_spoken_as_it_came(result: str, spoken: str) -> None:
    driver = started(BrainDriver.make(ORDER_SCENARIO), tools=("trackOrderTool",))
    speak(driver)
    tool_use_id = driver.bodies("toolUse")[0]["toolUseId"]
    driver.send(tool_start("r", tool_use_id), tool_result("r", result), content_end("r"))
    driver.advance(3)
    assert driver.exception() is None
    assert text_contents(driver, "ASSISTANT")[-1] == spoken
    assert driver.brain.record.ended is None  # the session goes on


def test_record_keeps_history_audio_and_events() -> None:
    driver = BrainDriver.make(record_audio=True)
    driver.send(*opening(), text_start("h", "USER"), text_input("h", "earlier"), content_end("h"),
                audio_start())
    driver.stream_audio(tone(0.2), realtime=False)
    record = driver.brain.record
    assert record.history == [("USER", "earlier")]
    assert record.system_prompt == "You are a test."
    assert record.audio_bytes == len(record.audio) == len(tone(0.2))
    assert record.input_events[:2] == ["sessionStart", "promptStart"]


def test_input_close_ends_the_stream_and_prompt_end_sends_completion_end() -> None:
    driver = started(BrainDriver.make(model_id=V1))
    driver.send(content_end("audio"), ev("promptEnd", promptName="p1"), ev("sessionEnd"))
    assert driver.names() == ["completionStart", "completionEnd"]
    assert not driver.ended()
    driver.brain.input_closed(driver.now)
    driver.pump()
    assert driver.ended() and driver.brain.record.ended == "closed"


def test_say_template_error_without_a_tool_result_degrades() -> None:
    scenario = parse_scenario({"turns": [{"assistant": [{"say": "Result: {{ tool_result.x }}."}]}]})
    driver = started(BrainDriver.make(scenario))
    speak(driver)
    driver.advance(3)
    assert driver.exception() is None
    assert text_contents(driver, "ASSISTANT")[-1] == "Result: ."


# -- the async adapter (NovaHandler) over an in-memory stream ---------------------------------------

def test_handler_plays_a_turn_and_ends_when_input_closes() -> None:

    async def main() -> tuple[MemoryStream, NovaHandler]:
        handler = NovaHandler(NovaConfig(speed=50.0), synthesize=fake_speech)
        stream = MemoryStream()
        for event in [*opening(), audio_start(), text_start("x", "USER", True), text_input("x", "hi"),
                      content_end("x")]:
            stream.client_send(event)
        async with asyncio.timeout(10), asyncio.TaskGroup() as tasks:
            task = tasks.create_task(handler.handle(stream))
            while "END_TURN" not in [b["stopReason"] for b in _bodies(stream.events, "contentEnd")
                                     if b["type"] == "TEXT"]:
                stream.output.clear()
                await stream.output.wait()
            stream.client_send(content_end("audio"))
            stream.client_send(ev("promptEnd", promptName="p1"))
            stream.client_send(ev("sessionEnd"))
            stream.client_close()
            await task
        return stream, handler

    stream, handler = asyncio.run(main())
    assert stream.closed and not stream.exceptions
    assert stream.names()[-1] == "completionEnd"
    record = handler.sessions[0]
    assert record.ended == "closed" and record.user_turns == ["hi"]
    assert record.input_events[-1] == "sessionEnd"


def test_handler_sends_validation_exception_and_throttles() -> None:

    handler = NovaHandler(NovaConfig(parse_scenario({"faults": {"throttle_connects": 1}})))
    request = StreamRequest(model_id="m", request_id="r", sequence=1)
    rejection = handler.admit(request)
    assert rejection is not None and (rejection.status, rejection.error_type) == (429, "ThrottlingException")
    assert handler.admit(request) is None

    async def main() -> MemoryStream:
        stream = MemoryStream()
        stream.client_send(text_start("x", "USER"))  # not sessionStart
        await asyncio.wait_for(handler.handle(stream), 5)
        return stream

    stream = asyncio.run(main())
    assert stream.exceptions == [("validationException", f"{INVALID_INPUT} (input event #1: contentStart)")]


def test_handler_input_timeout_is_bounded() -> None:

    async def main() -> MemoryStream:
        stream = MemoryStream()
        stream.client_send(opening()[0])
        await asyncio.wait_for(NovaHandler(NovaConfig(input_timeout_s=0.2)).handle(stream), 5)
        return stream

    assert asyncio.run(main()).exceptions == [("validationException", INPUT_TIMEOUT)]


def _bodies(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["event"][name] for e in events if name in e["event"]]


def test_a_fault_can_make_it_call_an_undeclared_tool() -> None:
    scenario = parse_scenario({
        "turns": [{"user": "q", "assistant": [{"tool": "noSuchTool"}, {"say": "Done."}]}],
        "faults": {"call_undeclared_tools": True}})
    driver = started(BrainDriver.make(scenario))
    speak(driver)
    assert [b["toolName"] for b in driver.bodies("toolUse")] == ["noSuchTool"]


def test_a_continuation_is_matched_on_whole_texts_and_the_best_overlap() -> None:
    scenario = parse_scenario({"turns": [{"user": f"turn {i}", "assistant": [{"say": f"Answer {i}."}]}
                                         for i in range(1, 12)]})
    script = Script(scenario)
    ahead = started(BrainDriver.make(script=script))
    for i in range(1, 11):  # conversation 1 reaches turn 10
        ahead.send(text_start(f"x{i}", "USER", True), text_input(f"x{i}", f"turn {i}"), content_end(f"x{i}"))
        ahead.advance(3)
    behind = started(BrainDriver.make(script=script))  # conversation 2 plays turn 1 only
    behind.send(text_start("y", "USER", True), text_input("y", "turn 1"), content_end("y"))
    behind.advance(3)
    # History "turn 10 / Answer 10." (trimmed to its end) belongs to conversation 1, not to the
    # conversation that said "turn 1".
    later = resumed(BrainDriver.make(script=script), ("USER", "turn 10"), ("ASSISTANT", "Answer 10."))
    later.send(text_start("z", "USER", True), text_input("z", "go on"), content_end("z"))
    later.advance(3)
    assert later.brain.record.conversation == 1
    assert text_contents(later, "ASSISTANT")[-1] == "Answer 11."
