from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from runner.protocol.history import prepare_history, split_utf8
from runner.protocol.setup import HistoryMessage

U, A = "USER", "ASSISTANT"


def msgs(*pairs: tuple[str, str]) -> tuple[HistoryMessage, ...]:
    return tuple(HistoryMessage(role, text) for role, text in pairs)  # type: ignore[arg-type]


def test_leading_assistant_messages_are_dropped() -> None:
    assert prepare_history(msgs((A, "hello"), (A, "again"), (U, "hi"), (A, "yes"))) == msgs(
        (U, "hi"), (A, "yes"))


def test_consecutive_same_role_messages_are_merged() -> None:
    assert prepare_history(msgs((U, "a"), (U, "b"), (A, "c"), (A, "d"), (U, "e"))) == msgs(
        (U, "a\nb"), (A, "c\nd"), (U, "e"))


def test_blank_messages_are_ignored_before_merging() -> None:
    assert prepare_history(msgs((U, "a"), (A, "  "), (U, "b"))) == msgs((U, "a\nb"))


def test_at_most_40_messages_oldest_dropped() -> None:
    history = msgs(*[(U if i % 2 == 0 else A, f"m{i}") for i in range(50)])
    kept = prepare_history(history)
    assert len(kept) == 40
    assert kept[0] == HistoryMessage(U, "m10") and kept[-1] == HistoryMessage(A, "m49")


def test_trimming_that_leaves_assistant_first_drops_it_too() -> None:
    history = msgs(*[(U if i % 2 == 0 else A, f"m{i}") for i in range(42)])
    kept = prepare_history(history, max_messages=5)
    assert [m.text for m in kept] == ["m38", "m39", "m40", "m41"]


def test_total_bytes_budget_oldest_dropped() -> None:
    history = msgs((U, "a" * 15_000), (A, "b" * 15_000), (U, "c" * 15_000), (A, "d" * 5000))
    kept = prepare_history(history)
    assert [m.text[0] for m in kept] == ["c", "d"]  # "b" would put it over; it is ASSISTANT-first anyway
    assert sum(len(m.text.encode()) for m in kept) <= 40_000


def test_a_single_oversized_message_keeps_its_end_on_a_character_boundary() -> None:
    (kept,) = prepare_history(msgs((U, "é" * 30_000)))
    assert len(kept.text.encode()) <= 40_000 and set(kept.text) == {"é"}


def test_empty_history() -> None:
    assert prepare_history(()) == ()
    assert prepare_history(msgs((A, "only the assistant"))) == ()


ROLES = st.sampled_from([U, A])


@given(st.lists(st.tuples(ROLES, st.text(max_size=3000)), max_size=60))
def test_limits_always_hold(pairs: list[tuple[str, str]]) -> None:
    kept = prepare_history(msgs(*pairs))
    assert len(kept) <= 40
    assert sum(len(m.text.encode("utf-8", "surrogatepass")) for m in kept) <= 40_000
    assert not kept or kept[0].role == U
    assert all(a.role != b.role for a, b in itertools.pairwise(kept))


@given(st.text(max_size=3000), st.integers(4, 1100))
def test_split_utf8_round_trips_within_the_limit(text: str, limit: int) -> None:
    pieces = split_utf8(text, limit)
    assert "".join(pieces) == text
    assert all(len(p.encode("utf-8", "surrogatepass")) <= limit for p in pieces)
    assert all(pieces) or pieces == [""]


def test_recorder_keeps_user_transcripts_and_assistant_final_text() -> None:
    from wire_helpers import content_end, content_start, out

    from runner.protocol.codec import decode_output
    from runner.protocol.history import HistoryRecorder

    payloads = [
        content_start("u", "TEXT", "USER", "FINAL"),
        out("textOutput", contentId="u", role="USER", content="Where is "),
        out("textOutput", contentId="u", role="USER", content="order 42?"),
        content_end("u", "TEXT", "PARTIAL_TURN"),
        content_start("s", "TEXT", "ASSISTANT", "SPECULATIVE"),
        out("textOutput", contentId="s", role="ASSISTANT", content="It shipped yesterday."),
        content_end("s", "TEXT", "PARTIAL_TURN"),
        content_start("f", "TEXT", "ASSISTANT", "FINAL"),
        out("textOutput", contentId="f", role="ASSISTANT", content="It shipped"),
        out("textOutput", contentId="f", role="ASSISTANT", content='{ "interrupted" : true }'),
        content_end("f", "TEXT", "INTERRUPTED"),
        content_start("e", "TEXT", "USER", "FINAL"), content_end("e", "TEXT", "PARTIAL_TURN"),
    ]
    recorder = HistoryRecorder()
    completed = [recorder.feed(decode_output(p)) for p in payloads]
    assert [m for m in completed if m] == list(recorder.messages) == [
        HistoryMessage("USER", "Where is order 42?"), HistoryMessage("ASSISTANT", "It shipped")]
