from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_helpers import audio_out, content_end, content_start, out

from runner.errors import RemoteProtocolError
from runner.protocol.codec import decode_document, decode_output, encode_input
from runner.protocol.events import (
    AudioOutput,
    CompletionEnd,
    CompletionStart,
    ContentEnd,
    ContentStart,
    ContentType,
    GenerationStage,
    Role,
    StopReason,
    TextInput,
    TextOutput,
    TokenCounts,
    ToolUse,
    UnknownEvent,
    UsageEvent,
)
from runner.protocol.templates import EventTemplates


def test_content_start_with_additional_model_fields_as_json_string() -> None:
    event = decode_output(content_start("c1", "TEXT", "ASSISTANT", "SPECULATIVE"))
    assert event == ContentStart("c1", ContentType.TEXT, Role.ASSISTANT, GenerationStage.SPECULATIVE)


def test_content_start_with_additional_model_fields_as_object() -> None:
    payload = out("contentStart", contentId="c1", type="TEXT", role="USER", completionId="k",
                  additionalModelFields={"generationStage": "FINAL"})
    assert decode_output(payload) == ContentStart("c1", ContentType.TEXT, Role.USER, "FINAL", "k")


def test_content_start_without_stage_and_unknown_stage_kept() -> None:
    assert decode_output(content_start("a", "AUDIO", "ASSISTANT")).generation_stage is None  # type: ignore[union-attr]
    assert decode_output(content_start("a", "TEXT", "USER", "DRAFT")).generation_stage == "DRAFT"  # type: ignore[union-attr]


@pytest.mark.parametrize("content", ['{ "interrupted" : true }', '{"interrupted":true}',
                                     '  {\n"interrupted":   true }\t'])
def test_interruption_marker_variants(content: str) -> None:
    event = decode_output(out("textOutput", contentId="c", role="ASSISTANT", content=content))
    assert isinstance(event, TextOutput) and event.is_interruption


@pytest.mark.parametrize("content", ['{ "interrupted" : false }', "I was interrupted", "interrupted",
                                     '{"interrupted": true, "x": 1}', "[1]"])
def test_not_interruption(content: str) -> None:
    event = decode_output(out("textOutput", contentId="c", role="ASSISTANT", content=content))
    assert isinstance(event, TextOutput) and not event.is_interruption


def test_audio_output_decodes_base64() -> None:
    assert decode_output(audio_out("c", b"\x01\x02\x03\x04")) == AudioOutput("c", b"\x01\x02\x03\x04")


@pytest.mark.parametrize("content", [json.dumps({"order_id": "42"}),
                                     json.dumps(json.dumps({"order_id": "42"}))])
def test_tool_use_arguments_plain_and_double_encoded(content: str) -> None:
    payload = out("toolUse", contentId="c", toolName="get_order", toolUseId="t", content=content)
    assert decode_output(payload) == ToolUse("c", "get_order", "t", {"order_id": "42"})


def test_tool_use_empty_arguments() -> None:
    payload = out("toolUse", contentId="c", toolName="now", toolUseId="t", content="")
    assert decode_output(payload) == ToolUse("c", "now", "t", {})


def test_content_end_completion_and_usage() -> None:
    assert decode_output(content_end("c", "AUDIO", "INTERRUPTED")) == ContentEnd(
        "c", ContentType.AUDIO, StopReason.INTERRUPTED)
    assert decode_output(out("completionStart", sessionId="s", promptName="p", completionId="k")) \
        == CompletionStart("s", "p", "k")
    assert decode_output(out("completionEnd", sessionId="s", promptName="p", completionId="k",
                             stopReason="END_TURN")) == CompletionEnd("s", "p", "k", "END_TURN")
    counts = {"input": {"speechTokens": 5, "textTokens": 1}, "output": {"speechTokens": 7, "textTokens": 2}}
    usage = decode_output(out("usageEvent", completionId="k", details={"delta": counts, "total": counts},
                              totalInputTokens=6, totalOutputTokens=9, totalTokens=15))
    assert usage == UsageEvent(TokenCounts(5, 1, 7, 2), TokenCounts(5, 1, 7, 2), 6, 9, 15, "k")


def test_unknown_event_type_is_tolerated() -> None:
    assert decode_output(out("futureThing", x=1)) == UnknownEvent("futureThing", {"x": 1})


@pytest.mark.parametrize(("payload", "message"), [
    (b"\xff\xfe{", "not UTF-8"),
    ('{"event": 1'.encode("utf-16"), "not UTF-8"),
    (b"{nope", "not JSON"),
    (b"[]", "no 'event' key"),
    (b'{"event": {}}', "exactly one event name"),
    (b'{"event": {"a": {}, "b": {}}}', "exactly one event name"),
    (b'{"event": {"textOutput": "x"}}', "body must be an object"),
    (out("textOutput", contentId=1, role="USER", content="x"), "'contentId' must be a string"),
    (out("textOutput", contentId="c", role="ROBOT", content="x"), "unknown role"),
    (out("contentStart", contentId="c", type="VIDEO", role="USER"), "unknown content type"),
    (out("contentStart", contentId="c", type="TEXT", role="USER", additionalModelFields="{x"), "not JSON"),
    (out("contentStart", contentId="c", type="TEXT", role="USER", additionalModelFields="[1]"),
     "must be a JSON object"),
    (out("audioOutput", contentId="c", content="!!!"), "not valid base64"),
    (out("audioOutput", contentId="c", content="AAAA"), "16-bit"),
    (out("audioOutput", contentId="c", content="é"), "base64"),
    (out("toolUse", contentId="c", toolName="t", toolUseId="u", content="{x"), "not JSON"),
    (out("toolUse", contentId="c", toolName="t", toolUseId="u", content="[1, 2]"), "JSON object"),
    (out("toolUse", contentId="c", toolName="t", toolUseId="u", content='"\\"just text\\""'), "JSON object"),
    (out("usageEvent", totalTokens=True), "must be a number"),
    (out("usageEvent", details={"delta": []}), "must be an object"),
])
def test_malformed_payloads_raise_remote_protocol_error(payload: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_output(payload)


def test_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_output(b"[" * 100_000 + b"]" * 100_000)


def test_encode_input_goes_through_the_template(templates: EventTemplates) -> None:
    payload = encode_input(templates, TextInput("p", "c", 'say "hi" <b>'))
    assert json.loads(payload) == {"event": {"textInput": {"promptName": "p", "contentName": "c",
                                                            "content": 'say "hi" <b>'}}}


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_remote_protocol_error(payload: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_output(payload)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
NAMES = st.sampled_from(["completionStart", "contentStart", "textOutput", "audioOutput", "toolUse",
                         "contentEnd", "completionEnd", "usageEvent", "other"])
KEYS = st.sampled_from(["contentId", "type", "role", "content", "toolName", "toolUseId", "stopReason",
                        "additionalModelFields", "details", "totalTokens", "sessionId", "completionId"])
VALUES = JSON | st.sampled_from(["TEXT", "AUDIO", "TOOL", "USER", "ASSISTANT", "AAAA", '{"a": 1}',
                                 '"{}"', '{"generationStage": 3}'])


@settings(max_examples=500)
@given(st.one_of(JSON, st.builds(lambda name, body: {"event": {name: body}}, NAMES,
                                 st.dictionaries(KEYS, VALUES, max_size=6))))
def test_any_json_value_decodes_or_raises_remote_protocol_error(document: Any) -> None:
    try:
        decode_document(document)
        decode_output(json.dumps(document).encode())
    except RemoteProtocolError:
        pass
