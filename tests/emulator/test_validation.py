"""Every validation rule, with the exact message the real service sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.emulator.validation import (
    ASSISTANT_FIRST,
    CHAT_HISTORY_FIRST,
    INVALID_INPUT,
    TOOL_PARSE,
    InputValidator,
    NovaValidationError,
    invalid_voice_message,
)
from tests.emulator.fakes import (
    V1,
    V2,
    audio_input,
    audio_start,
    content_end,
    ev,
    opening,
    prompt_start,
    raw,
    session_start,
    text_input,
    text_start,
    tool_result,
    tool_start,
)

OPEN = opening(tools=("lookup",))
PCM = bytes(640)


def run(events: list[Any], model: str = V2, issued: tuple[str, ...] = ()) -> InputValidator:
    validator = InputValidator(model)
    for tool_use_id in issued:
        validator.tool_use_issued(tool_use_id)
    for event in events:
        validator.check(event if isinstance(event, bytes) else raw(event))
    return validator


def history(*messages: tuple[str, str]) -> list[dict[str, Any]]:
    events = []
    for i, (role, text) in enumerate(messages):
        events += [text_start(f"h{i}", role), text_input(f"h{i}", text), content_end(f"h{i}")]
    return events


def full_session() -> list[dict[str, Any]]:
    return [*OPEN, *history(("USER", "hi"), ("ASSISTANT", "hello")), audio_start(), audio_input(PCM),
            tool_start("t1", "tu-1"), tool_result("t1", '{"ok": true}'), content_end("t1"),
            text_start("x", "USER", interactive=True), text_input("x", "typed"), content_end("x"),
            audio_input(PCM), content_end("audio"), ev("promptEnd", promptName="p1"), ev("sessionEnd")]


def test_a_complete_valid_session_passes() -> None:
    validator = run(full_session(), issued=("tu-1",))
    assert validator.session_ended
    assert validator.prompt is not None and validator.prompt.tool_names == ("lookup",)


def test_audio_input_is_decoded() -> None:
    validator = run([*OPEN, audio_start()])
    assert validator.check(raw(audio_input(b"\x01\x02"))).audio == b"\x01\x02"


def test_closed_block_is_returned_with_its_text() -> None:
    validator = run([*OPEN, text_start("x", "USER", True), text_input("x", "a"), text_input("x", "b")])
    event = validator.check(raw(content_end("x")))
    assert event.block is not None and "".join(event.block.text) == "ab" and event.block.interactive


def with_session(extra: dict[str, Any]) -> dict[str, Any]:
    event = session_start()
    event["event"]["sessionStart"].update(extra)
    return event


def with_prompt_audio(**audio: Any) -> dict[str, Any]:
    event = prompt_start()
    event["event"]["promptStart"]["audioOutputConfiguration"].update(audio)
    return event


CASES: dict[str, tuple[list[Any], str, str]] = {
    # name: (events, model, message)
    "not json": ([b"{not json"], V2, INVALID_INPUT),
    "unknown event": ([ev("sessionBegin")], V2, INVALID_INPUT),
    "two events in one": ([{"event": {"sessionStart": {}, "promptEnd": {}}}], V2, INVALID_INPUT),
    "first event not sessionStart": ([prompt_start()], V2, INVALID_INPUT),
    "flat endpointingSensitivity": ([with_session({"endpointingSensitivity": "HIGH"})], V2, INVALID_INPUT),
    "unknown field": ([with_session({"foo": 1})], V2, INVALID_INPUT),
    "endpointing on v1": ([with_session({"turnDetectionConfiguration": {"endpointingSensitivity": "HIGH"}})],
                          V1, INVALID_INPUT),
    "sessionStart twice": ([session_start(), session_start()], V2, INVALID_INPUT),
    "capitalised voice": ([session_start(), prompt_start("Matthew")], V2,
                          invalid_voice_message("Matthew")),
    "unknown voice": ([session_start(), prompt_start("bob")], V2,
                      invalid_voice_message("bob")),
    "v2-only voice on v1": ([session_start(), prompt_start("tina")], V1,
                            invalid_voice_message("tina")),
    "v1-only voice on v2": ([session_start(), prompt_start("greta")], V2,
                            invalid_voice_message("greta")),
    "bad output rate": ([session_start(), with_prompt_audio(sampleRateHertz=44100)], V2, INVALID_INPUT),
    "tool schema not a string": ([session_start(), prompt_start(tools=("x",), schema_json={"type": "x"})],
                                 V2, INVALID_INPUT),
    "tool schema string not JSON": ([session_start(), prompt_start(tools=("x",), schema_json="{oops")],
                                    V2, INVALID_INPUT),
    "promptStart twice": ([session_start(), prompt_start(), prompt_start()], V2, INVALID_INPUT),
    "promptName mismatch": ([session_start(), prompt_start(),
                             ev("contentStart", **{**text_start("s", "SYSTEM")["event"]["contentStart"],
                                                   "promptName": "other"})], V2, INVALID_INPUT),
    "content before promptStart": ([session_start(), text_start("s", "SYSTEM")], V2, INVALID_INPUT),
    "textInput for a block not open": ([*OPEN, text_input("nope", "x")], V2, INVALID_INPUT),
    "contentEnd for a block not open": ([*OPEN, content_end("nope")], V2, INVALID_INPUT),
    "toolResult for a block not open": ([*OPEN, tool_result("nope", "{}")], V2, INVALID_INPUT),
    "audioInput for a block not open": ([*OPEN, audio_input(PCM)], V2, INVALID_INPUT),
    "audioInput while TEXT open": ([*OPEN, audio_start(), text_start("x", "USER", True), audio_input(PCM)],
                                   V2, CHAT_HISTORY_FIRST),
    "audioInput while TOOL open": ([*OPEN, audio_start(), tool_start("t", "tu-1"), audio_input(PCM)],
                                   V2, CHAT_HISTORY_FIRST),
    "audio not base64": ([*OPEN, audio_start(), ev("audioInput", promptName="p1", contentName="audio",
                                                     content="***")], V2, INVALID_INPUT),
    "textInput into the AUDIO block": ([*OPEN, audio_start(), text_input("audio", "x")], V2, INVALID_INPUT),
    "duplicate contentName": ([*OPEN, audio_start(), audio_start()], V2, INVALID_INPUT),
    "two text blocks open": ([*OPEN, text_start("a", "USER"), text_start("b", "USER")], V2, INVALID_INPUT),
    "tool result not JSON": ([*OPEN, audio_start(), tool_start("t", "tu-1"), tool_result("t", "sunny")],
                             V2, TOOL_PARSE),
    "tool result for a tool use never issued": ([*OPEN, audio_start(), tool_start("t", "tu-unknown")],
                                                V2, INVALID_INPUT),
    "second result for one tool use": ([*OPEN, audio_start(), tool_start("t", "tu-1"), tool_result("t", "{}"),
                                        content_end("t"), tool_start("t2", "tu-1")], V2, INVALID_INPUT),
    "history starts with ASSISTANT": ([*OPEN, text_start("h", "ASSISTANT")], V2, ASSISTANT_FIRST),
    "41 history messages": ([*OPEN, *history(*[("USER", "m")] * 40), text_start("h41", "USER")],
                            V2, INVALID_INPUT),
    "textInput over 1 KB": ([*OPEN, text_start("h", "USER"), text_input("h", "é" * 513)], V2, INVALID_INPUT),
    "history over 40 KB": ([*OPEN, *history(*[("USER", "x" * 1000)] * 39),
                            text_start("big", "ASSISTANT"), *[text_input("big", "y" * 1000)] * 2],
                           V2, INVALID_INPUT),
    "interactive text on v1": ([*opening(), text_start("x", "USER", interactive=True)], V1, INVALID_INPUT),
    "speech prompt on v1": ([*opening(), text_start("x", "SYSTEM_SPEECH")], V1, INVALID_INPUT),
    "event after sessionEnd": ([*OPEN, ev("promptEnd", promptName="p1"), ev("sessionEnd"), session_start()],
                               V2, INVALID_INPUT),
    "content after promptEnd": ([*OPEN, ev("promptEnd", promptName="p1"), text_start("x", "USER")],
                                V2, INVALID_INPUT),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rule(name: str) -> None:
    events, model, message = CASES[name]
    *ok, bad = events
    validator = run(ok, model=model, issued=("tu-1",))
    with pytest.raises(NovaValidationError) as caught:
        validator.check(bad if isinstance(bad, bytes) else raw(bad))
    assert caught.value.reason == message
    # The message names the refused event and its position on the stream.
    name = next(iter(bad["event"])) if isinstance(bad, dict) and len(bad["event"]) == 1 else "?"
    assert caught.value.message == f"{message} (input event #{len(events)}: {name})"


@pytest.mark.parametrize(("payload", "name"), [
    (b"not json", "?"), (b'{"event": {"sessionStart": []}}', "sessionStart"), (b"[1]", "?"),
    (b'{"event": {"sessionStart": {}, "promptStart": {}}}', "?"),
])
def test_a_refused_event_is_named_even_when_malformed(payload: bytes, name: str) -> None:
    with pytest.raises(NovaValidationError) as caught:
        InputValidator(V2).check(payload)
    assert caught.value.message == f"{INVALID_INPUT} (input event #1: {name})"


def test_session_start_without_inference_configuration_is_accepted() -> None:
    # Clients (strands) send an empty sessionStart on purpose and get the service's defaults.
    run([ev("sessionStart"), prompt_start(), text_start("s", "SYSTEM"), text_input("s", "x"),
         content_end("s"), audio_start(), audio_input(PCM)])
    run([ev("sessionStart", inferenceConfiguration={})])


def test_history_limits_accept_the_maximum() -> None:
    # 40 messages of 1000 bytes (39 x 1 KB-ish plus one split across textInputs) stay legal.
    events = [*OPEN, *history(*[("USER", "x" * 1024)] * 39), text_start("last", "ASSISTANT"),
              text_input("last", "y" * 500), content_end("last"), audio_start()]
    run(events)


def test_unknown_model_accepts_any_known_voice_and_nova2_features() -> None:
    run([session_start(turnDetectionConfiguration={"endpointingSensitivity": "LOW"}), prompt_start("greta"),
         text_start("x", "USER", interactive=True)], model="amazon.nova-9-sonic-v1:0")


def test_v1_accepts_plain_audio_session() -> None:
    run([*opening(), *history(("USER", "a")), audio_start(), audio_input(PCM), content_end("audio"),
         ev("promptEnd", promptName="p1"), ev("sessionEnd")], model=V1)


def test_tool_result_content_must_be_json_text_not_bare_string() -> None:
    validator = run([*OPEN, audio_start(), tool_start("t", "tu-1")], issued=("tu-1",))
    validator.check(raw(tool_result("t", json.dumps("a JSON string is JSON"))))


def test_invalid_voice_message_is_the_services_wording() -> None:
    assert invalid_voice_message("Matthew") == (
        "Received invalid id: 'Matthew'. Please check AWS documentation for valid voiceIds.")
