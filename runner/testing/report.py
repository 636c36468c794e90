"""The readable summary of `agent-run test`: a line per case as it finishes, then each failure in
full (the expectation's FILE:LINE, what happened instead, the turn's transcript), then the totals."""

from __future__ import annotations

from collections.abc import Sequence

from runner.testing.runner import Outcome


def case_line(outcome: Outcome) -> str:
    verdict = "PASS" if outcome.passed else "FAIL"
    runs = ""
    if len(outcome.attempts) > 1 or outcome.settings.repeat > 1:
        runs = f", {outcome.passes}/{len(outcome.attempts)} runs passed"
    return f"{verdict}  {outcome.case.where.file}: {outcome.case.name} ({outcome.duration_s:.1f} s{runs})"


def failures(outcomes: Sequence[Outcome]) -> list[str]:
    """Each failed case in full, in the order of the files."""
    return [f"--- FAIL {o.case.name}\n{o.report()}" for o in outcomes if not o.passed]


def totals(outcomes: Sequence[Outcome], elapsed_s: float, skipped: int = 0) -> str:
    failed = sum(not o.passed for o in outcomes)
    count = len(outcomes) + skipped
    cases = f"{count} case{'' if count == 1 else 's'}"
    skips = f", {skipped} skipped" if skipped else ""
    return f"{cases}: {len(outcomes) - failed} passed, {failed} failed{skips} ({elapsed_s:.1f} s)"
