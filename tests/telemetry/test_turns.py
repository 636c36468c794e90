"""The sans-IO turn tracker, driven synchronously with made-up times."""

from __future__ import annotations

import pytest

from runner.protocol.events import TokenCounts
from runner.telemetry.meter import summary_lines, turn_line
from runner.telemetry.prices import BUILTIN_TABLE, Prices, PriceTable
from runner.telemetry.turns import ToolTiming, TurnRecord, TurnTracker, percentile

NOVA2 = "amazon.nova-2-sonic-v1:0"


def tracker(model: str = NOVA2, prices: PriceTable = BUILTIN_TABLE) -> tuple[TurnTracker, list[TurnRecord]]:
    done: list[TurnRecord] = []
    return TurnTracker(model_id=model, prices=prices, on_turn=done.append, close_after_s=1.0), done


def test_a_spoken_turn_measures_from_the_last_loud_chunk_before_its_transcript() -> None:
    t, done = tracker()
    t.stream_opened(1, 0.0)
    t.stream_accepted(1, 0.25)
    for at in (1.0, 1.032, 1.064, 2.5):  # the user speaks; 2.5 is the last loud chunk
        t.mic_loud(at)
    t.user_heard(3.2)  # the service's USER transcript
    t.usage(TokenCounts(input_speech=40, input_text=5))
    assert t.assistant_audio(3.9)
    assert not t.assistant_audio(3.95)  # only the first audio of the answer counts
    t.played(3.98, turn_number=1)
    t.tool_finished(ToolTiming("lookup", 120.0, True, 3.5))
    t.answer_ended(5.0)
    t.usage(TokenCounts(output_speech=100, output_text=20))  # the last usageEvent comes after END_TURN
    t.tick(5.5)
    assert done == []  # still waiting for late usage
    t.tick(6.0)
    [turn] = done
    assert turn.figures == {"speech_end_to_transcript_ms": 700.0, "speech_end_to_first_audio_ms": 1400.0,
                            "speech_end_to_first_played_ms": 1480.0, "tool_ms": 120.0,
                            "stream_setup_ms": 250.0}
    assert turn.tokens == TokenCounts(40, 5, 100, 20)
    assert turn.cost_usd == pytest.approx((40 * 0.003 + 5 * 0.00033 + 100 * 0.012 + 20 * 0.00275) / 1000)
    entry = turn.entry(run_started=0.5)
    assert entry["turn"] == 1 and entry["trigger"] == "speech" and entry["at_s"] == 2.7
    assert entry["stream"] == 1
    assert entry["tokens"]["total"] == 165
    assert entry["tools"] == [{"name": "lookup", "duration_ms": 120.0, "ok": True}]


def test_a_typed_line_is_its_own_end_of_speech_and_the_next_input_closes_the_turn() -> None:
    t, done = tracker()
    t.mic_loud(0.5)  # earlier noise is not this turn's end of speech
    t.text_sent(1.0)
    t.assistant_audio(1.6)
    t.text_sent(1.8)  # typed over the answer: the first turn ends here, unanswered
    assert [d.number for d in done] == [1]
    first = done[0]
    assert first.trigger == "text"
    assert first.figures["speech_end_to_first_audio_ms"] == 600.0
    assert "speech_end_to_transcript_ms" not in first.figures
    assert "speech_end_to_first_played_ms" not in first.figures  # never played
    summary = t.finish(2.0)
    assert [d.number for d in done] == [1, 2]
    assert summary.turns == 2


def test_a_transcript_without_new_speech_has_no_end_of_speech() -> None:
    t, done = tracker()
    t.mic_loud(1.0)
    t.user_heard(2.0)
    t.user_heard(3.0)  # no loud chunk since the last turn began
    t.assistant_audio(3.5)
    t.finish(4.0)
    assert done[0].speech_end_at == 1.0
    assert done[1].speech_end_at is None
    assert done[1].figures == {}
    assert "end of speech" not in turn_line(done[1])


def test_greeting_turn_has_no_end_of_speech_and_audio_after_end_turn_is_not_first_audio() -> None:
    t, done = tracker()
    t.greeting_heard(1.0)
    t.answer_ended(1.5)
    assert not t.assistant_audio(1.6)
    t.finish(1.7)
    assert done[0].trigger == "greeting" and done[0].first_audio_at is None


def test_interrupted_turn_stays_open_until_the_next_input() -> None:
    t, done = tracker()
    t.mic_loud(1.0)
    t.user_heard(1.5)
    t.assistant_audio(2.0)
    t.interrupted()
    t.tick(10.0)
    assert done == []  # an interruption does not end the turn by itself
    t.mic_loud(3.0)
    t.user_heard(3.4)
    assert done[0].interrupted and done[0].entry(0.0)["interrupted"] is True
    assert "interrupted" in turn_line(done[0])


def test_played_for_an_older_turn_is_ignored() -> None:
    t, done = tracker()
    t.text_sent(1.0)
    t.assistant_audio(1.2)
    t.text_sent(2.0)
    t.played(2.1, turn_number=1)  # the first answer was cut before it played
    t.finish(3.0)
    assert all(d.first_played_at is None for d in done)


def test_usage_between_turns_goes_to_the_next_turn_and_the_summary_counts_everything() -> None:
    t, done = tracker()
    t.usage(TokenCounts(input_text=7))  # before any turn (history replay)
    t.text_sent(1.0)
    t.usage(TokenCounts(output_text=3))
    summary = t.finish(2.0)
    assert done[0].tokens == TokenCounts(input_text=7, output_text=3)
    assert summary.tokens == TokenCounts(input_text=7, output_text=3)


def test_stream_set_up_goes_to_the_first_turn_on_that_stream_and_all_streams_to_the_summary() -> None:
    t, done = tracker()
    t.stream_opened(1, 0.0)
    t.stream_accepted(1, 0.1)
    t.text_sent(1.0)
    t.text_sent(2.0)
    closed = t.stream_closed(1, 2.5, "StreamReset")
    assert closed is not None and closed.error == "StreamReset" and closed.setup_ms == pytest.approx(100.0)
    t.stream_opened(2, 2.6)
    t.stream_accepted(2, 2.9)
    t.stream_opened(3, 5.0)  # never accepted: no set-up figure
    t.text_sent(3.0)
    summary = t.finish(4.0)
    assert [d.stream_setup_ms for d in done] == [pytest.approx(100.0), None, pytest.approx(300.0)]
    assert [d.stream for d in done] == [1, 1, 2]
    assert summary.figures["stream_setup_ms"] == {"p50": 100.0, "p95": 300.0, "n": 2}


def test_summary_percentiles_are_nearest_rank() -> None:
    assert percentile([5.0], 50) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([3, 1, 2], 95) == 3
    t, _ = tracker()
    for i in range(20):
        t.text_sent(i * 10.0)
        t.assistant_audio(i * 10.0 + (i + 1) / 10)  # 100, 200, ... 2000 ms
    summary = t.finish(500.0)
    assert summary.figures["speech_end_to_first_audio_ms"] == {"p50": 1000.0, "p95": 1900.0, "n": 20}
    lines = summary_lines(summary)
    assert lines[0] == "summary: 20 turns (p50 / p95)"
    assert any("end of speech -> first audio" in line and "1000 / 1900 ms" in line for line in lines)


def test_an_unpriced_model_has_tokens_but_no_cost() -> None:
    t, done = tracker(model="acme.voice-9")
    t.text_sent(1.0)
    t.usage(TokenCounts(output_speech=10))
    summary = t.finish(2.0)
    assert done[0].cost_usd is None and "cost_usd" not in done[0].entry(0.0)
    assert summary.cost_usd is None and "cost_usd" not in summary.entry()
    assert "no price for this model" in summary_lines(summary)[-1]


def test_a_cross_region_profile_is_priced_as_its_model() -> None:
    table = PriceTable({NOVA2: Prices(1.0, 2.0, 3.0, 4.0)}, "test")
    assert table.cost("us.amazon.nova-2-sonic-v1:0", TokenCounts(1000, 1000, 1000, 1000)) == 10.0


def test_a_turn_whose_answer_still_plays_stays_open() -> None:
    t, done = tracker()
    t.text_sent(1.0)
    t.assistant_audio(1.2)
    t.answer_ended(1.5)  # sent faster than it plays
    t.tick(5.0, playing=True)
    assert done == []  # a barge-in may still cut it
    t.interrupted()
    t.tick(6.0, playing=False)
    assert [d.interrupted for d in done] == [True]
