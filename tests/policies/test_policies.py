from __future__ import annotations

from collections.abc import Iterable

import pytest

from runner.policies import (
    POLICIES,
    POLICY_NAMES,
    Action,
    BargeInPolicy,
    CallTool,
    ConversationPolicy,
    FlushPlayback,
    MarkInterrupted,
    Play,
    SimplePolicy,
)
from runner.protocol.events import (
    AudioOutput,
    ContentEnd,
    ContentStart,
    ContentType,
    OutputEvent,
    Role,
    TextOutput,
    TokenCounts,
    ToolUse,
    UsageEvent,
)

MARKER = '{ "interrupted" : true }'
PCM = b"\x01\x00\x02\x00"


def speculative(cid: str) -> ContentStart:
    return ContentStart(cid, ContentType.TEXT, Role.ASSISTANT, "SPECULATIVE")


def final(cid: str) -> ContentStart:
    return ContentStart(cid, ContentType.TEXT, Role.ASSISTANT, "FINAL")


def audio_start(cid: str) -> ContentStart:
    return ContentStart(cid, ContentType.AUDIO, Role.ASSISTANT)


def marker(cid: str) -> TextOutput:
    return TextOutput(cid, Role.ASSISTANT, MARKER)


def interrupted_end(cid: str, type_: ContentType = ContentType.TEXT) -> ContentEnd:
    return ContentEnd(cid, type_, "INTERRUPTED")


def run(policy: ConversationPolicy, events: Iterable[OutputEvent]) -> list[Action]:
    actions: list[Action] = []
    for event in events:
        actions += policy.on_event(event)
    return actions


def answer_start(cid: str = "a") -> list[OutputEvent]:
    return [speculative(f"{cid}-s"), ContentEnd(f"{cid}-s", ContentType.TEXT, "PARTIAL_TURN"),
            audio_start(f"{cid}-au"), AudioOutput(f"{cid}-au", PCM), AudioOutput(f"{cid}-au", PCM)]


def test_registry() -> None:
    assert POLICY_NAMES == ("barge-in", "simple")
    for name, factory in POLICIES.items():
        policy = factory()
        assert policy.name == name


@pytest.mark.parametrize("factory", [SimplePolicy, BargeInPolicy])
def test_audio_is_played_and_tools_are_called(factory: type[ConversationPolicy]) -> None:
    policy = factory()
    actions = run(policy, [*answer_start(), ToolUse("t-c", "get_order", "t-1", {"order_id": "42"}),
                           UsageEvent(TokenCounts(), TokenCounts(), 0, 0, 0)])
    assert actions == [Play("a-au", PCM), Play("a-au", PCM), CallTool("get_order", "t-1", {"order_id": "42"})]


def test_simple_is_half_duplex_and_never_flushes() -> None:
    policy = SimplePolicy()
    assert policy.mic_open(assistant_audio_pending=False)
    assert not policy.mic_open(assistant_audio_pending=True)
    actions = run(policy, [*answer_start(), marker("a-f"), interrupted_end("a-f"), AudioOutput("a-au", PCM)])
    assert FlushPlayback() not in actions and not any(isinstance(a, MarkInterrupted) for a in actions)
    assert actions.count(Play("a-au", PCM)) == 3


def test_barge_in_mic_always_open() -> None:
    policy = BargeInPolicy()
    assert policy.mic_open(assistant_audio_pending=True) and policy.mic_open(assistant_audio_pending=False)


@pytest.mark.parametrize("signals", [
    [marker("a-f")],
    [interrupted_end("a-f")],
    [marker("a-f"), interrupted_end("a-f")],
    [interrupted_end("a-au", ContentType.AUDIO), marker("a-f")],
    [marker("a-f"), marker("a-f"), interrupted_end("a-f"), interrupted_end("a-au", ContentType.AUDIO)],
])
def test_barge_in_flushes_once_per_answer_on_either_signal(signals: list[OutputEvent]) -> None:
    policy = BargeInPolicy()
    run(policy, answer_start())
    actions = run(policy, [final("a-f"), *signals])
    assert actions == [FlushPlayback(), MarkInterrupted(signals[0].content_id)]


def test_barge_in_drops_audio_of_the_interrupted_answer() -> None:
    policy = BargeInPolicy()
    run(policy, answer_start())
    assert run(policy, [marker("a-f")]) == [FlushPlayback(), MarkInterrupted("a-f")]
    assert run(policy, [AudioOutput("a-au", PCM), AudioOutput("a-au", PCM)]) == []


def test_barge_in_plays_the_next_answer_and_ignores_late_signals_of_the_old_one() -> None:
    policy = BargeInPolicy()
    run(policy, [*answer_start("a"), final("a-f"), marker("a-f")])
    user = [ContentStart("u", ContentType.TEXT, Role.USER, "FINAL"), TextOutput("u", Role.USER, "stop"),
            ContentEnd("u", ContentType.TEXT, "PARTIAL_TURN")]
    actions = run(policy, [*user, *answer_start("b"),
                           interrupted_end("a-f"),          # late second signal of the first answer
                           AudioOutput("a-au", PCM),        # late audio of the first answer
                           AudioOutput("b-au", PCM)])
    assert actions == [Play("b-au", PCM)] * 3


def test_barge_in_second_answer_can_be_interrupted_too() -> None:
    policy = BargeInPolicy()
    run(policy, [*answer_start("a"), marker("a-au")])
    run(policy, answer_start("b"))
    assert run(policy, [interrupted_end("b-au", ContentType.AUDIO)]) == [
        FlushPlayback(), MarkInterrupted("b-au")]


def test_barge_in_normal_turn_end_does_not_interrupt() -> None:
    policy = BargeInPolicy()
    actions = run(policy, [*answer_start(), ContentEnd("a-au", ContentType.AUDIO, "END_TURN"),
                           final("a-f"), TextOutput("a-f", Role.ASSISTANT, "Your order shipped."),
                           ContentEnd("a-f", ContentType.TEXT, "END_TURN"), *answer_start("b")])
    assert actions == [Play("a-au", PCM)] * 2 + [Play("b-au", PCM)] * 2
