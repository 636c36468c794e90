"""The harness's parts without a conversation: the scripted microphone, the policy tap, mocks, and
cutting a timeline into turn records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_agent_run_test import REPO

from runner.audio.base import AudioFormat
from runner.config.loader import load_agent
from runner.errors import ToolError
from runner.protocol.events import AudioOutput, ContentEnd, ContentType
from runner.testing.harness import ScriptedSource, Tap, _records, _TurnMarks, mocked_tools
from runner.testing.model import Mock, TextInput, Turn, Where

HERE = Where("t.test.yaml", 3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_scripted_source_speaks_once_then_is_silent() -> None:
    async def main() -> None:
        clock = FakeClock()
        fmt = AudioFormat(16000)
        async with ScriptedSource(fmt, 20, clock) as source:
            assert await source.read() == bytes(640)
            source.speak(b"\x01\x00" * 400)  # 25 ms: two chunks, the second padded
            clock.now = 101.0
            first = await source.read()
            clock.now = 101.02
            second = await source.read()
            assert first == b"\x01\x00" * 320
            assert second == b"\x01\x00" * 80 + bytes(480)
            assert (source.started_at, source.ended_at, source.speaking) == (101.0, 101.02, False)
            source.mute(True)
            source.speak(b"\x02\x00" * 320)
            assert await source.read() == bytes(640)  # muted: it holds its place
            source.mute(False)
            assert await source.read() == b"\x02\x00" * 320

    asyncio.run(main())


def test_the_tap_notes_audio_starts_answer_ends_and_what_was_sent() -> None:
    tap = Tap()
    tap.output(AudioOutput("a", b"\0\0"), 100.0)
    tap.output(AudioOutput("a", b"\0\0"), 101.0)  # the same block: not a new start
    tap.output(ContentEnd("a", ContentType.AUDIO, "PARTIAL_TURN"), 101.0)
    tap.output(ContentEnd("b", ContentType.TEXT, "END_TURN"), 101.5)
    tap.sent("user_text", 102.0, text="hi")
    tap.sent("audio", 103.0, speaking=True)
    tap.sent("audio", 104.0, speaking=False)
    tap.sent("tool_result", 105.0, name="t", tool_use_id="u")
    assert (tap.audio_starts, tap.answer_ends) == ([100.0], [101.5])
    assert (tap.typed, tap.speech_ends) == ([102.0], [104.0])


def test_mocked_tools_answer_with_their_canned_result_or_error() -> None:
    agent = load_agent(REPO / "agents" / "orders.yaml")
    tools = mocked_tools(agent.tools, {"trackOrderTool": Mock("trackOrderTool", result={"a": 1}),
                                       "getDateAndTimeTool": Mock("getDateAndTimeTool", error="down")})
    assert tools["trackOrderTool"].function(orderId="1") == {"a": 1}
    with pytest.raises(ToolError, match="down"):
        tools["getDateAndTimeTool"].function()
    assert mocked_tools(agent.tools, {})["trackOrderTool"] is agent.tools[1]


def entry(kind: str, ts: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "ts": ts, **fields}


def test_a_timeline_is_cut_into_turns_at_each_turn_start() -> None:
    tap = Tap()
    tap.audio_starts.extend([10.3, 20.9])
    marks = [_TurnMarks(Turn(HERE, TextInput("hi")), 10.0, 10.0),
             _TurnMarks(Turn(HERE, TextInput("order 1?")), 20.0, 20.5)]
    entries = [
        entry("user", 10.1, text="hi"), entry("assistant", 10.6, text="Hello."),
        entry("usage", 10.7, total_tokens=50),
        entry("user", 20.1, text="order 1?"),
        entry("tool_call", 20.2, name="t", input={"id": "1"}, tool_use_id="u1"),
        entry("tool_result", 20.3, name="t", result={"ok": True}, duration_ms=12.0, tool_use_id="u1"),
        entry("interrupted", 20.95), entry("assistant", 21.0, text="Done."),
    ]
    first, second = _records(marks, entries, tap)
    assert (first.heard, first.said, first.tool_calls, first.total_tokens) == (("hi",), ("Hello.",), (), 50)
    assert first.first_audio_ms == pytest.approx(300)
    assert second.heard == ("order 1?",) and second.interrupted and second.total_tokens == 50
    assert second.tool_calls[0].name == "t" and second.tool_calls[0].duration_ms == 12.0
    assert second.first_audio_ms == pytest.approx(400)
    assert second.lines == ("> typed: order 1?", "heard: order 1?", 'tool call: t {"id": "1"}',
                            'tool result: t {"ok": true} (12 ms)', "(the assistant was interrupted)",
                            "assistant: Done.")
