"""CallClock, the sans-IO core of call control: when to nudge, say goodbye and end, driven by hand."""

from __future__ import annotations

from runner.config.model import InactivityConfig
from runner.conversation.control import (
    ANSWER_SETTLE_S,
    END_CALL_SETTLE_S,
    Activity,
    CallClock,
    CallControlOptions,
    End,
    Say,
)

INACTIVITY = InactivityConfig(nudge_after_s=10, end_after_s=5, nudge="NUDGE", goodbye="BYE")


def quiet(*, user_at: float = 0.0, output_at: float = 0.0, answered_at: float | None = None,
          busy: bool = False) -> Activity:
    return Activity(user_at=user_at, output_at=output_at, answered_at=answered_at, busy=busy)


def run(clock: CallClock, times: list[float], activity: Activity) -> list[tuple[float, object]]:
    return [(t, action) for t in times for action in clock.step(t, activity)]


def test_inactivity_nudges_then_says_goodbye_then_ends_once_the_goodbye_was_answered() -> None:
    clock = CallClock(CallControlOptions(inactivity=INACTIVITY), started_at=0.0)
    assert clock.step(9.9, quiet()) == []
    assert clock.step(10.0, quiet()) == [Say("NUDGE", "nudge")]
    assert clock.step(11.0, quiet()) == []  # nudged once
    # The nudge's answer plays until 13 (busy): the further quiet counts from there.
    assert clock.step(13.0, quiet(output_at=12.0, busy=True)) == []
    assert clock.step(17.9, quiet(output_at=12.0)) == []
    assert clock.step(18.0, quiet(output_at=12.0)) == [Say("BYE", "goodbye")]
    assert clock.closing == "inactivity"
    # Its answer is being received and played: not yet.
    assert clock.step(19.0, quiet(output_at=19.0, busy=True)) == []
    assert clock.step(20.0, quiet(output_at=19.5, answered_at=19.5)) == [End("inactivity")]
    assert clock.step(21.0, quiet()) == []  # ended once


def test_the_user_speaking_after_the_nudge_starts_the_count_over() -> None:
    clock = CallClock(CallControlOptions(inactivity=INACTIVITY), started_at=0.0)
    assert clock.step(10.0, quiet()) == [Say("NUDGE", "nudge")]
    assert clock.step(11.0, quiet(user_at=11.0)) == []
    # Back to the first delay: no goodbye at 16 (5 s after the user), a new nudge at 21.
    assert clock.step(16.0, quiet(user_at=11.0)) == []
    assert clock.step(21.0, quiet(user_at=11.0)) == [Say("NUDGE", "nudge")]


def test_nothing_counts_as_silence_while_the_assistant_speaks_or_a_tool_runs() -> None:
    clock = CallClock(CallControlOptions(inactivity=INACTIVITY), started_at=0.0)
    for t in range(0, 30):
        assert clock.step(float(t), quiet(busy=True)) == []
    # Busy at 29 for the last time: ten quiet seconds from there.
    assert clock.step(38.9, quiet()) == []
    assert clock.step(39.0, quiet()) == [Say("NUDGE", "nudge")]


def test_without_text_input_nothing_is_said_and_the_call_ends_after_both_delays() -> None:
    clock = CallClock(CallControlOptions(inactivity=INACTIVITY, speaks_text=False), started_at=0.0)
    actions = run(clock, [t / 10 for t in range(0, 200)], quiet())
    assert actions == [(15.0, End("inactivity"))]


def test_max_duration_says_the_closing_line_then_ends_when_it_was_answered_and_played() -> None:
    clock = CallClock(CallControlOptions(max_duration_s=60, closing_line="CLOSE"), started_at=100.0)
    assert clock.step(159.9, quiet()) == []
    assert clock.step(160.0, quiet()) == [Say("CLOSE", "closing")]
    assert clock.step(161.0, quiet(output_at=161.0, busy=True)) == []
    assert clock.step(162.0, quiet(output_at=161.5, answered_at=161.5, busy=True)) == []  # still playing
    assert clock.step(163.0, quiet(output_at=161.5, answered_at=161.5)) == [End("max_duration")]


def test_a_closing_line_nobody_answers_ends_after_the_settle_time() -> None:
    clock = CallClock(CallControlOptions(max_duration_s=5), started_at=0.0)
    assert clock.step(5.0, quiet())[0] == Say(CallControlOptions().closing_line, "closing")
    assert clock.step(5.0 + ANSWER_SETTLE_S - 0.1, quiet()) == []
    assert clock.step(5.0 + ANSWER_SETTLE_S, quiet()) == [End("max_duration")]


def test_a_closing_that_never_goes_quiet_is_still_bounded() -> None:
    options = CallControlOptions(max_duration_s=5, closing_limit_s=20)
    clock = CallClock(options, started_at=0.0)
    clock.step(5.0, quiet())
    assert clock.step(24.9, quiet(output_at=24.9, busy=True)) == []
    assert clock.step(25.0, quiet(output_at=25.0, busy=True)) == [End("max_duration")]


def test_end_call_waits_for_the_tool_and_the_playback_then_a_short_quiet() -> None:
    clock = CallClock(CallControlOptions(), started_at=0.0)
    clock.end("end_call", 3.0)
    assert clock.step(3.1, quiet(output_at=3.0, busy=True)) == []  # the tool still runs
    assert clock.step(4.0, quiet(output_at=3.2, busy=True)) == []  # the goodbye plays
    assert clock.step(4.0 + END_CALL_SETTLE_S - 0.1, quiet(output_at=3.2)) == []
    assert clock.step(4.0 + END_CALL_SETTLE_S, quiet(output_at=3.2)) == [End("end_call")]


def test_end_call_ends_at_once_when_the_answer_after_the_tool_result_ended_and_played() -> None:
    clock = CallClock(CallControlOptions(), started_at=0.0)
    clock.end("end_call", 3.0)
    assert clock.step(4.0, quiet(output_at=3.9, answered_at=3.9)) == [End("end_call")]


def test_the_first_reason_to_end_wins() -> None:
    clock = CallClock(CallControlOptions(max_duration_s=10), started_at=0.0)
    clock.end("end_call", 1.0)
    clock.end("transfer", 1.5)
    assert clock.step(20.0, quiet()) == [End("end_call")]  # no closing line: already ending


def test_no_settings_no_actions() -> None:
    clock = CallClock(CallControlOptions(), started_at=0.0)
    assert run(clock, [float(t) for t in range(0, 10000, 7)], quiet()) == []
