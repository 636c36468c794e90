from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_helpers import (
    NOVA1,
    NOVA2,
    audio_out,
    check_input_order,
    content_end,
    content_start,
    decode_all,
    ids,
    out,
    tool_use,
)

from runner.config.templates import builtin_sources
from runner.errors import LocalProtocolError, RemoteProtocolError
from runner.protocol.events import AudioInput, ContentType, Role, TextOutput, ToolUse
from runner.protocol.session import (
    CALLS,
    WIRE,
    EventTooLargeError,
    Session,
    SessionState,
    Wire,
)
from runner.protocol.setup import HistoryMessage, SessionSetup, ToolSpec
from runner.protocol.templates import (
    EVENT_STREAM_PAYLOAD_LIMIT,
    MAX_EVENT_BYTES,
    EventTemplateError,
    EventTemplates,
    TemplateSource,
)

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}


def make(templates: EventTemplates, **overrides: Any) -> Session:
    setup = SessionSetup(model_id=NOVA2, voice_id="matthew", system_prompt="You are helpful.")
    return Session(dataclasses.replace(setup, **overrides), templates, new_id=ids())


def names(payloads: list[bytes]) -> list[str]:
    return [n for n, _ in decode_all(payloads)]


def streaming(templates: EventTemplates, **overrides: Any) -> Session:
    session = make(templates, **overrides)
    session.start()
    session.data_to_send()
    return session


# --- start ---------------------------------------------------------------------------------------


def test_start_queues_the_documented_order(templates: EventTemplates) -> None:
    session = make(templates, tools=(ToolSpec("get_order", "Look up an order.", SCHEMA),),
                   history=(HistoryMessage("USER", "hi"), HistoryMessage("ASSISTANT", "hello")),
                   greeting="Greet the caller.", input_sample_rate=8000)
    session.start()
    events = decode_all(session.data_to_send())
    check_input_order(events)
    blocks = [(b["type"], b["role"], b["interactive"]) for n, b in events if n == "contentStart"]
    assert blocks == [("TEXT", "SYSTEM", False), ("TEXT", "USER", False), ("TEXT", "ASSISTANT", False),
                      ("AUDIO", "USER", True), ("TEXT", "USER", True)]
    audio_start = next(b for n, b in events if n == "contentStart" and b["type"] == "AUDIO")
    assert audio_start["audioInputConfiguration"]["sampleRateHertz"] == 8000
    (tool,) = events[1][1]["toolConfiguration"]["tools"]
    # Nova wants the schema as a JSON string.
    assert json.loads(tool["toolSpec"]["inputSchema"]["json"]) == SCHEMA
    texts = [b["content"] for n, b in events if n == "textInput"]
    assert texts == ["You are helpful.", "hi", "hello", "Greet the caller."]
    assert session.state is SessionState.STREAMING
    assert session.data_to_send() == []


def test_long_prompt_split_into_1kb_pieces_without_splitting_characters(templates: EventTemplates) -> None:
    prompt = ("é€😀a" * 400)  # 1, 2, 3, 4 bytes per character, 4000 bytes in all
    session = make(templates, system_prompt=prompt)
    session.start()
    events = decode_all(session.data_to_send())
    pieces = [b["content"] for n, b in events if n == "textInput"]
    assert len(pieces) == 4
    assert all(len(p.encode()) <= 1024 for p in pieces)
    assert "".join(pieces) == prompt


def test_history_is_prepared_before_it_is_sent(templates: EventTemplates) -> None:
    history = (HistoryMessage("ASSISTANT", "leading"), HistoryMessage("USER", "a"),
               HistoryMessage("USER", "b"), HistoryMessage("ASSISTANT", "c"))
    session = make(templates, history=history)
    session.start()
    events = decode_all(session.data_to_send())
    history_blocks = [b["role"] for n, b in events if n == "contentStart"][1:-1]
    assert history_blocks == ["USER", "ASSISTANT"]
    assert [b["content"] for n, b in events if n == "textInput"][1:] == ["a\nb", "c"]


def test_greeting_is_not_sent_to_v1(templates: EventTemplates) -> None:
    session = make(templates, model_id=NOVA1, greeting="Hello!")
    session.start()
    events = decode_all(session.data_to_send())
    assert events[-1][0] == "contentStart" and events[-1][1]["type"] == "AUDIO"


def test_endpointing_on_v1_is_refused(templates: EventTemplates) -> None:
    with pytest.raises(LocalProtocolError, match="Nova 2"):
        make(templates, model_id=NOVA1, endpointing_sensitivity="HIGH")


def test_endpointing_on_nova2_is_nested(templates: EventTemplates) -> None:
    session = make(templates, endpointing_sensitivity="HIGH")
    session.start()
    first = decode_all(session.data_to_send())[0][1]
    assert first["turnDetectionConfiguration"] == {"endpointingSensitivity": "HIGH"}


# --- audio held back -----------------------------------------------------------------------------


def test_audio_before_the_audio_block_is_held_and_sent_right_after_it(templates: EventTemplates) -> None:
    session = make(templates, greeting="Hi")
    session.send_audio(b"\x01\x00" * 4)
    assert session.data_to_send() == []
    session.start(open_audio=False)
    session.send_audio(b"\x02\x00" * 4)
    assert "audioInput" not in names(session.data_to_send())
    assert session.state is SessionState.PRIMED
    assert session.statistics().audio_bytes_held == 16
    session.open_audio()
    events = decode_all(session.data_to_send())
    assert [n for n, _ in events[:3]] == ["contentStart", "audioInput", "audioInput"]
    assert events[0][1]["type"] == "AUDIO"
    assert events[3][1]["interactive"] is True  # then the greeting
    stats = session.statistics()
    assert (stats.audio_bytes_sent, stats.audio_bytes_held, stats.audio_bytes_dropped) == (16, 0, 0)


def test_held_audio_over_the_bound_drops_oldest_and_counts(templates: EventTemplates) -> None:
    setup = SessionSetup(model_id=NOVA2, voice_id="matthew", system_prompt="p")
    session = Session(setup, templates, new_id=ids(), max_held_audio_bytes=8)
    for value in range(1, 5):
        session.send_audio(bytes([value, 0]) * 2)  # 4 bytes each
    stats = session.statistics()
    assert (stats.audio_bytes_held, stats.audio_bytes_dropped) == (8, 8)
    session.start()
    sent = [b["content"] for n, b in decode_all(session.data_to_send()) if n == "audioInput"]
    assert sent == ["AwADAA==", "BAAEAA=="]  # frames 3 and 4, in order


def test_send_audio_refuses_partial_samples(templates: EventTemplates) -> None:
    session = streaming(templates)
    for bad in (b"", b"\x00"):
        with pytest.raises(LocalProtocolError, match="16-bit"):
            session.send_audio(bad)
    assert session.data_to_send() == []


# --- text and tool blocks ------------------------------------------------------------------------


def test_send_text_is_one_atomic_interactive_block(templates: EventTemplates) -> None:
    session = streaming(templates)
    session.send_text("x" * 2000)
    events = decode_all(session.data_to_send())
    assert [n for n, _ in events] == ["contentStart", "textInput", "textInput", "contentEnd"]
    assert events[0][1]["interactive"] is True and events[0][1]["role"] == "USER"


def test_send_text_on_v1_is_refused(templates: EventTemplates) -> None:
    session = streaming(templates, model_id=NOVA1)
    with pytest.raises(LocalProtocolError, match="Nova 2"):
        session.send_text("hello")
    assert session.data_to_send() == []


def test_tool_result_for_a_received_tool_use(templates: EventTemplates) -> None:
    session = streaming(templates)
    (event,) = session.receive_data(tool_use("t-1", "get_order", {"order_id": "42"}))
    assert isinstance(event, ToolUse) and event.arguments == {"order_id": "42"}
    assert session.pending_tool_uses == (event,)
    assert session.statistics().pending_tools == 1
    session.send_tool_result("t-1", '{"status": "shipped"}')
    events = decode_all(session.data_to_send())
    assert [n for n, _ in events] == ["contentStart", "toolResult", "contentEnd"]
    assert events[0][1]["toolResultInputConfiguration"]["toolUseId"] == "t-1"
    assert events[1][1]["content"] == '{"status": "shipped"}'
    assert session.pending_tool_uses == ()


@pytest.mark.parametrize("first", [False, True])
def test_tool_result_never_goes_to_a_stream_that_did_not_issue_it(templates: EventTemplates,
                                                                   first: bool) -> None:
    session = streaming(templates)
    if first:
        session.receive_data(tool_use("t-1"))
        session.send_tool_result("t-1", "{}")
        session.data_to_send()
    with pytest.raises(LocalProtocolError, match="never sent to a stream that did not issue it"):
        session.send_tool_result("t-1", "{}")
    assert session.data_to_send() == []


def test_duplicate_tool_use_after_its_result_is_not_pending_again(templates: EventTemplates) -> None:
    session = streaming(templates)
    session.receive_data(tool_use("t-1"))
    session.send_tool_result("t-1", "{}")
    session.receive_data(tool_use("t-1"))
    assert session.pending_tool_uses == ()


def test_tool_result_must_be_json(templates: EventTemplates) -> None:
    session = streaming(templates)
    session.receive_data(tool_use("t-1"))
    with pytest.raises(LocalProtocolError, match="JSON"):
        session.send_tool_result("t-1", "shipped")
    assert session.pending_tool_uses and session.data_to_send() == []


def test_a_failing_template_leaves_the_session_unchanged() -> None:
    sources = builtin_sources()
    sources["textInput"] = TemplateSource(
        '{% if content == "boom" %}{{ missing }}{% endif %}'
        + sources["textInput"].text, "override/textInput.json.j2")
    session = make(EventTemplates(sources))
    session.start()
    before = session.data_to_send()
    with pytest.raises(EventTemplateError, match="override/textInput"):
        session.send_text("boom")
    assert session.data_to_send() == []
    session.send_audio(b"\x00\x00")
    assert names(session.data_to_send()) == ["audioInput"]
    check_input_order(decode_all(before))


# --- end -----------------------------------------------------------------------------------------


def test_end_closes_in_the_documented_order_and_is_idempotent(templates: EventTemplates) -> None:
    session = streaming(templates)
    session.end()
    events = decode_all(session.data_to_send())
    assert [n for n, _ in events] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert events[0][1]["contentName"] == session.audio_content_name
    session.end()
    assert session.data_to_send() == []
    for call, args in (("send_audio", (b"\0\0",)), ("send_text", ("hi",)),
                       ("send_tool_result", ("t", "{}")), ("start", ()), ("open_audio", ())):
        with pytest.raises(LocalProtocolError, match=f"{call}\\(\\) is not allowed in session state CLOSED"):
            getattr(session, call)(*args)
    assert session.state is SessionState.CLOSED


def test_end_before_start_sends_nothing_and_counts_held_audio(templates: EventTemplates) -> None:
    session = make(templates)
    session.send_audio(b"\0\0" * 5)
    session.end()
    assert session.data_to_send() == []
    assert session.statistics().audio_bytes_dropped == 10


def test_end_while_primed_closes_prompt_and_session(templates: EventTemplates) -> None:
    session = make(templates)
    session.start(open_audio=False)
    session.data_to_send()
    session.end()
    assert names(session.data_to_send()) == ["promptEnd", "sessionEnd"]


# --- the tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "call"), [(SessionState.IDLE, "send_text"),
                                             (SessionState.IDLE, "send_tool_result"),
                                             (SessionState.PRIMED, "start"),
                                             (SessionState.STREAMING, "open_audio")])
def test_illegal_call_names_call_state_and_expected_and_changes_nothing(
        templates: EventTemplates, state: SessionState, call: str) -> None:
    session = make(templates)
    if state is not SessionState.IDLE:
        session.start(open_audio=state is SessionState.STREAMING)
    session.data_to_send()
    args: dict[str, tuple[Any, ...]] = {"send_text": ("hi",), "send_tool_result": ("t", "{}")}
    with pytest.raises(LocalProtocolError) as info:
        getattr(session, call)(*args.get(call, ()))
    message = str(info.value)
    assert f"{call}()" in message and state.name in message and "expected" in message
    assert all(f"{c}()" in message for c in CALLS[state])
    assert session.state is state and session.data_to_send() == []


def test_audio_is_never_legal_inside_a_text_or_tool_block() -> None:
    for wire in (Wire.W_PROMPT_TEXT, Wire.W_AUDIO_TEXT, Wire.W_AUDIO_TOOL, Wire.W_PROMPT):
        assert AudioInput not in WIRE[wire]
    assert AudioInput in WIRE[Wire.W_AUDIO]


# --- receiving -----------------------------------------------------------------------------------


def test_receive_tracks_blocks_stages_and_answering(templates: EventTemplates) -> None:
    session = streaming(templates)
    session.receive_data(content_start("u1", "TEXT", "USER", "FINAL"))
    assert session.generation_stage("u1") == "FINAL" and not session.assistant_answering
    session.receive_data(content_end("u1", "TEXT", "PARTIAL_TURN"))
    session.receive_data(content_start("a1", "TEXT", "ASSISTANT", "SPECULATIVE"))
    assert session.assistant_answering and not session.at_turn_boundary
    session.receive_data(content_end("a1", "TEXT", "PARTIAL_TURN"))
    session.receive_data(content_start("a2", "AUDIO", "ASSISTANT"))
    (audio,) = session.receive_data(audio_out("a2", b"\x01\x02"))
    assert audio.pcm == b"\x01\x02"  # type: ignore[union-attr]
    assert [b.content_id for b in session.open_output_blocks] == ["a2"]
    session.receive_data(content_end("a2", "AUDIO", "END_TURN"))
    assert not session.assistant_answering
    # FINAL text after END_TURN does not start a new answer.
    session.receive_data(content_start("a3", "TEXT", "ASSISTANT", "FINAL"))
    assert not session.assistant_answering
    session.receive_data(content_end("a3", "TEXT", "END_TURN"))
    assert session.at_turn_boundary
    received = session.statistics().events_received
    assert received == {"contentStart": 4, "contentEnd": 4, "audioOutput": 1}


def test_interruption_marker_ends_the_answer(templates: EventTemplates) -> None:
    session = streaming(templates)
    session.receive_data(content_start("a1", "AUDIO", "ASSISTANT"))
    (marker,) = session.receive_data(out("textOutput", contentId="a0", role="ASSISTANT",
                                         content='{ "interrupted" : true }'))
    assert isinstance(marker, TextOutput) and marker.is_interruption
    assert not session.assistant_answering


def test_malformed_payload_raises_remote_error_and_changes_nothing(templates: EventTemplates) -> None:
    session = streaming(templates)
    before = session.statistics()
    with pytest.raises(RemoteProtocolError):
        session.receive_data(b'{"event": {"toolUse": {"contentId": "c"}}}')
    assert session.statistics() == before


# --- property: any sequence of calls keeps the wire legal ----------------------------------------

OPS = st.lists(st.one_of(
    st.tuples(st.just("audio"), st.integers(1, 40)),
    st.tuples(st.just("text"), st.text(min_size=0, max_size=1500)),
    st.tuples(st.just("tool_use"), st.sampled_from(["t1", "t2", "t3"])),
    st.tuples(st.just("tool_result"), st.sampled_from(["t1", "t2", "t3"])),
    st.tuples(st.just("start"), st.booleans()),
    st.tuples(st.just("open_audio"), st.none()),
    st.tuples(st.just("end"), st.none()),
), max_size=30)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, model=st.sampled_from([NOVA1, NOVA2]), greeting=st.sampled_from([None, "Hi"]))
def test_any_call_sequence_keeps_the_input_order(templates: EventTemplates, ops: list[tuple[str, Any]],
                                                 model: str, greeting: str | None) -> None:
    session = make(templates, model_id=model, greeting=greeting)
    payloads: list[bytes] = []
    audio_given: list[bytes] = []
    for op, arg in ops:
        state = session.state
        try:
            if op == "audio":
                pcm = bytes([len(audio_given) % 256, 0]) * arg
                session.send_audio(pcm)
                audio_given.append(pcm)
            elif op == "text":
                session.send_text(arg)
            elif op == "tool_use":
                session.receive_data(tool_use(arg))
            elif op == "tool_result":
                session.send_tool_result(arg, json.dumps({"id": arg}))
            elif op == "start":
                session.start(open_audio=arg)
            else:
                getattr(session, op)()
        except LocalProtocolError:
            assert session.state is state
            assert session.data_to_send() == []
        payloads += session.data_to_send()
    session.end()
    payloads += session.data_to_send()
    if not payloads:
        return
    events = decode_all(payloads)
    check_input_order(events)
    sent_audio = [e[1]["content"] for e in events if e[0] == "audioInput"]
    stats = session.statistics()
    assert stats.audio_bytes_sent + stats.audio_bytes_dropped == sum(map(len, audio_given))
    assert len(sent_audio) <= len(audio_given)


def test_role_enum_covers_history_roles() -> None:
    assert Role("USER") is Role.USER and ContentType("TOOL") is ContentType.TOOL


# --- event size (issue 13) ---------------------------------------------------------------------


def test_a_tool_result_over_one_events_size_is_refused_before_it_is_queued(templates: EventTemplates) -> None:
    session = streaming(templates)
    session.receive_data(tool_use("t-1"))
    # 4 bytes of UTF-8 per character: over the byte limit within Jinja's character budget.
    content = json.dumps({"q": "\U0001F600" * (MAX_EVENT_BYTES // 4 + 10)}, ensure_ascii=False)
    with pytest.raises(EventTooLargeError) as caught:
        session.check_tool_result(content)
    assert caught.value.event == "toolResult" and caught.value.size > MAX_EVENT_BYTES
    assert caught.value.template == "<built-in>/toolResult.json.j2"
    with pytest.raises(EventTooLargeError):
        session.send_tool_result("t-1", content)
    # Nothing was queued and the tool use is still pending: an error result can still be sent.
    assert session.data_to_send() == []
    assert [t.tool_use_id for t in session.pending_tool_uses] == ["t-1"]
    session.check_tool_result('{"error": "too large"}')
    session.send_tool_result("t-1", '{"error": "too large"}')
    assert names(session.data_to_send()) == ["contentStart", "toolResult", "contentEnd"]


def test_the_size_limit_leaves_room_for_the_sdks_framing() -> None:
    # {"bytes":"<base64>"} inside an inner message inside the signed outer message: <= 16 MiB.
    inner_payload = len('{"bytes":""}') + 4 * -(-MAX_EVENT_BYTES // 3)
    inner_message = 12 + 75 + inner_payload + 4
    assert inner_message <= EVENT_STREAM_PAYLOAD_LIMIT
