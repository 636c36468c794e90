"""PlayoutLedger (runner/serve/playout.py): what the far end has played, from the marks it echoes."""

from __future__ import annotations

from runner.serve.playout import MAX_OUTSTANDING, PlayoutLedger


def test_only_echoed_marks_count_and_an_echo_confirms_the_marks_before_it() -> None:
    ledger = PlayoutLedger()
    ledger.add(100)
    ledger.mark("a")
    ledger.add(50)
    ledger.mark("b", position=120)  # where the far end's audio really ends (some is held back)
    ledger.add(30)
    ledger.mark("c")
    assert (ledger.sent, ledger.played, ledger.unconfirmed) == (180, 0, 180)
    assert ledger.reached("b")  # in order: "a" has played too
    assert ledger.played == 120
    assert not ledger.reached("a")  # no longer outstanding
    assert not ledger.reached("zzz")  # never sent
    assert ledger.played == 120
    assert ledger.reached("c") and ledger.played == 180 and ledger.unconfirmed == 0
    assert (ledger.marks_sent, ledger.marks_confirmed) == (3, 2)


def test_a_clear_settles_everything_sent_and_forgets_the_marks_out() -> None:
    ledger = PlayoutLedger()
    ledger.add(100)
    ledger.mark("a")
    ledger.add(100)
    ledger.cleared()
    assert ledger.played == 200  # nothing of it will play: not waited for
    assert not ledger.reached("a")  # the far end answers it after the clear: it says nothing
    ledger.add(40)
    ledger.mark("b", position=10_000)  # never past what was sent
    assert ledger.reached("b") and ledger.played == 240


def test_marks_never_echoed_are_bounded() -> None:
    ledger = PlayoutLedger()
    for n in range(MAX_OUTSTANDING + 10):
        ledger.add(1)
        ledger.mark(f"m{n}")
    assert not ledger.reached("m0")  # forgotten
    assert ledger.reached(f"m{MAX_OUTSTANDING + 9}") and ledger.played == MAX_OUTSTANDING + 10
