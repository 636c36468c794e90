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


KNOWN_BUGS: tuple[KnownBug, ...] = (
    # f1 (control characters): PyYAML's reader refuses NUL and other C0/C1 characters when the
    # loader is constructed, outside load()'s try in runner/config/yaml.py.
    KnownBug(
        "test_a_nul_byte_in_a_yaml_file_is_a_located_error",
        "ReaderError",
        "unacceptable character",
        "runner/config/yaml.py",
    ),
    # f1 (numbers): a YAML integer over 4,300 digits raises int()'s ValueError while building.
    KnownBug(
        "test_a_5000_digit_integer_in_a_yaml_file_is_a_located_error",
        "ValueError",
        "Exceeds the limit .* digits",
        "runner/config/yaml.py",
    ),
    # f1 (control characters): a --var value that is not UTF-8 (surrogate escapes from argv)
    # reaches the prompt's size check, which encodes it.
    KnownBug(
        "test_a_var_value_that_is_not_utf8_is_refused",
        "UnicodeEncodeError",
        "surrogates not allowed",
        "runner/config/loader.py",
    ),
    # f1 (paths; runner/config/loader.py _read): an agent path too long for the OS (ENAMETOOLONG)
    # is refused by read_user_file, then `path.is_dir()` for the message raises the OSError again.
    KnownBug(
        "test_an_agent_path_too_long_for_the_os_is_a_located_error",
        "OSError",
        "File name too long",
        "runner/config/loader.py",
    ),
    # f2 (runner/protocol/templates.py; deep nesting and numbers classes): a template override that
    # renders JSON nested deeper than the recursion limit, or with an integer over 4,300 digits,
    # escapes render()'s `except json.JSONDecodeError` (RecursionError, plain ValueError).
    KnownBug(
        "test_a_template_rendering_deep_or_huge_json_is_a_located_error",
        "RecursionError",
        "maximum recursion depth",
        "runner/protocol/templates.py",
    ),
    KnownBug(
        "test_a_template_rendering_deep_or_huge_json_is_a_located_error",
        "ValueError",
        "Exceeds the limit .* digits",
        "runner/protocol/templates.py",
    ),
)


def known_bug(exc: BaseException) -> KnownBug | None:
    return next((bug for bug in KNOWN_BUGS if bug.matches(exc)), None)


def known_bug_in_output(output: str) -> KnownBug | None:
    return next((bug for bug in KNOWN_BUGS if bug.matches_text(output)), None)
