"""Open bugs the fuzzers found in files other engineers own, tolerated by the fuzz targets
(so CI stays green meanwhile) only while they stay open: each has a minimal reproducer in
tests/fuzz/test_regressions.py marked `xfail(strict=True)`. When the owner's fix lands, that
test passes, strict xfail turns it into a failure, and its entry here must go (then the fuzzers
hold the fixed behaviour too)."""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownBug:
    name: str  # the regression test in test_regressions.py
    exception: str  # the exception's class name
    message: str  # a regular expression its message matches
    raised_in: str  # a file in the traceback (the owner's), so a new site is not hidden

    def matches(self, exc: BaseException) -> bool:
        files = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)]
        return (
            type(exc).__name__ == self.exception
            and re.search(self.message, str(exc)) is not None
            and any(f.endswith(self.raised_in) for f in files)
        )

    def matches_text(self, output: str) -> bool:
        """For a traceback printed by the CLI (exit 3) rather than raised."""
        return (
            re.search(rf"^(?:[\w.]+\.)?{self.exception}: .*{self.message}", output, re.MULTILINE) is not None
            and self.raised_in in output
        )


# None open: every bug the fuzzers found so far is fixed, with its reproducer in test_regressions.py.
KNOWN_BUGS: tuple[KnownBug, ...] = ()


def known_bug(exc: BaseException) -> KnownBug | None:
    return next((bug for bug in KNOWN_BUGS if bug.matches(exc)), None)


def known_bug_in_output(output: str) -> KnownBug | None:
    return next((bug for bug in KNOWN_BUGS if bug.matches_text(output)), None)
