"""The conversation's parts that are pure logic: the record (echoes), taps, queued typed input.

The parts that move bytes are exercised end to end (tests/e2e, tests/continuation).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from runner.console import Console
from runner.conversation import QueueTextInput
from runner.conversation.record import ConversationRecord, Heard
from runner.conversation.taps import SPEECH_END_QUIET_S, Taps
from runner.protocol.events import ContentEnd, ContentStart, ContentType, OutputEvent, Role, TextOutput
from runner.transcript import Transcript


def block(role: Role, text: str, n: int, stage: str = "FINAL") -> list[OutputEvent]:
    cid = f"c{n}"
    return [ContentStart(cid, ContentType.TEXT, role, stage), TextOutput(cid, role, text),
            ContentEnd(cid, ContentType.TEXT, "END_TURN")]


def feed(record: ConversationRecord, events: list[OutputEvent]) -> list[Heard]:
    return [heard for event in events if (heard := record.feed(event)) is not None]


def quiet_record() -> tuple[ConversationRecord, Transcript]:
    transcript = Transcript(None)
    return ConversationRecord(transcript, Console(quiet=True, stream=io.StringIO())), transcript


def test_a_typed_line_is_recorded_once_and_its_echo_recognised() -> None:
    record, transcript = quiet_record()
    record.said_by_user("yes")
    record.said_by_user("yes")  # the same line twice before either echo
    heard = feed(record, block(Role.USER, "yes", 1) + block(Role.USER, "yes", 2) + block(Role.USER, "yes", 3))
    assert [h.kind for h in heard] == ["echo", "echo", "user"]  # the third was said, not typed
    assert [(e["type"], e["text"]) for e in transcript.entries] == [("user", "yes")] * 3
    assert [m.text for m in record.messages] == ["yes"] * 3


def test_the_greeting_echo_is_the_greeting_and_a_tool_note_joins_the_history() -> None:
    record, transcript = quiet_record()
    record.greeting_echo = "Say hello."
    record.expect_echo("(Result of the x tool)", add_to_history=True)
    heard = feed(record, block(Role.USER, "Say hello.", 1) + block(Role.USER, "(Result of the x tool)", 2)
                 + block(Role.ASSISTANT, "Hello!", 3))
    assert heard == [Heard("greeting", "Say hello."), Heard("echo", "(Result of the x tool)"),
                     Heard("assistant", "Hello!")]
    assert [e["type"] for e in transcript.entries] == ["greeting", "assistant"]
    assert [m.role for m in record.messages] == ["USER", "USER", "ASSISTANT"]


def test_a_trailing_user_message_is_resent_as_text_on_nova2_only() -> None:
    record, _ = quiet_record()
    record.said_by_user("Where is my order?")
    history, replay = record.history_for_next_stream(nova2=True)
    assert (history, replay) == ((), "Where is my order?")
    history, replay = record.history_for_next_stream(nova2=False)
    assert replay is None and [m.text for m in history] == ["Where is my order?"]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float, dict[str, Any]]] = []

    def output(self, event: OutputEvent, at: float) -> None:
        self.seen.append(("output", at, {"event": event}))

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        self.seen.append((kind, at, fields))


class Broken(Recorder):
    def sent(self, kind: str, at: float, **fields: Any) -> None:
        raise RuntimeError("tap bug")


def test_a_failing_tap_is_dropped_and_the_others_go_on() -> None:
    good, bad = Recorder(), Broken()
    taps = Taps([bad, good], clock=lambda: 5.0)
    taps.sent("user_text", text="hi")
    taps.sent("tool_result", name="t", tool_use_id="u1")
    assert good.seen == [("user_text", 5.0, {"text": "hi"}),
                         ("tool_result", 5.0, {"name": "t", "tool_use_id": "u1"})]
    assert bad.seen == []  # dropped after its first failure, never raised


def test_the_edges_of_speech_are_reported_once_each() -> None:
    now = [0.0]
    tap = Recorder()
    taps = Taps([tap], clock=lambda: now[0])
    loud, silent = (b"\x00\x40" * 320), bytes(640)
    for t, chunk in [(0.0, silent), (0.02, loud), (0.04, loud), (0.06, silent),
                     (0.06 + SPEECH_END_QUIET_S / 2, silent), (0.04 + SPEECH_END_QUIET_S, silent),
                     (1.5, silent)]:
        now[0] = t
        taps.audio(chunk)
    assert [(k, at, f) for k, at, f in tap.seen] == [("audio", 0.02, {"speaking": True}),
                                                     ("audio", 0.04, {"speaking": False})]


def test_a_queue_input_ends_for_good_at_none() -> None:
    async def main() -> list[str | None]:
        text = QueueTextInput(maxsize=4)
        await text.put("one")
        text.put_nowait(None)
        text.put_nowait("after the end")
        return [await text.read_line() for _ in range(3)]

    assert asyncio.run(main()) == ["one", None, None]
