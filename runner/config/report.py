"""Located problems in agent files, and how they are shown to people and machines."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """`text` safe to print and to put in JSON: bytes that were not UTF-8 (a file name from argv
    arrives with surrogate escapes) as `\\xff`, control characters as `\\x07` (a newline as `\\n`:
    one problem is one line), so a hostile name can neither crash the output nor drive the terminal."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # argv's undecodable bytes, back as they were
    except UnicodeEncodeError:  # a lone surrogate that did not come from a byte
        raw = text.encode("utf-8", "backslashreplace")
    decoded = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], decoded)


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with a file, at a 1-based line and column."""

    file: str
    line: int
    col: int
    severity: Severity
    message: str

    def format(self) -> str:
        """`FILE:LINE:COL: error: message`, the form editors and CI annotators parse."""
        message = shown(self.message)  # one problem, one line
        return f"{shown(self.file)}:{self.line}:{self.col}: {self.severity}: {message}"

    def to_json(self) -> dict[str, str | int]:
        return {"file": shown(self.file), "line": self.line, "col": self.col,
                "severity": self.severity, "message": shown(self.message)}

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def count(problems: Iterable[Problem]) -> tuple[int, int]:
    """(errors, warnings)."""
    errors = warnings = 0
    for p in problems:
        if p.is_error:
            errors += 1
        else:
            warnings += 1
    return errors, warnings


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(files: int, problems: Iterable[Problem]) -> str:
    """One line, e.g. `2 files checked: 3 errors, 1 warning`."""
    errors, warnings = count(problems)
    return f"{_plural(files, 'file')} checked: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
