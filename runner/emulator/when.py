"""`when:` conditions of scenario turns: which user inputs a turn answers.

A condition is words (every word or phrase must appear in what the user said, as whole words,
ignoring case and punctuation), a regular expression (searched, case-insensitive unless the
pattern says otherwise; its named groups are the captures), or both (both must hold). Pure data
and functions: the scenario loader compiles conditions (reporting problems as messages), the
brain asks `When.match(heard)` with the text the model heard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Only this much of what was heard is matched: Python's `re` cannot be interrupted, so a slow
# pattern (nested quantifiers) is bounded by the text it runs on. Longer inputs are not typical
# of a spoken or typed turn.
MAX_HEARD_CHARS = 4000

_NON_WORD = re.compile(r"[\W_]+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def words_of(text: str) -> tuple[str, ...]:
    """`text` as matching sees it: case-folded words, punctuation and underscores dropped."""
    return tuple(_NON_WORD.sub(" ", text.casefold()).split())


class WhenError(ValueError):
    """A condition that cannot be compiled; `key` is "words" or "regex", `index` the entry."""

    def __init__(self, key: str, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.index = index


@dataclass(frozen=True, slots=True)
class When:
    # Each entry as words; it matches where these words appear in this order, next to each other.
    words: tuple[tuple[str, ...], ...] = ()
    pattern: re.Pattern[str] | None = None

    def match(self, heard: str) -> dict[str, str] | None:
        """The captures (named groups; "" for a group that took no part) when `heard` satisfies
        the condition, else None."""
        heard = heard[:MAX_HEARD_CHARS]
        if self.words:
            text = f" {' '.join(words_of(heard))} "
            if not all(f" {' '.join(entry)} " in text for entry in self.words):
                return None
        if self.pattern is None:
            return {}
        found = self.pattern.search(heard)
        if found is None:
            return None
        # A lone surrogate (a JSON escape in the client's text) has no UTF-8 form: as the
        # decoder shows an unreadable character.
        return {name: _LONE_SURROGATE.sub("\ufffd", value or "") for name, value in found.groupdict().items()}

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(self.pattern.groupindex) if self.pattern is not None else frozenset()

    def describe(self) -> str:
        parts = []
        if self.words:
            parts.append("words " + ", ".join(" ".join(entry) for entry in self.words))
        if self.pattern is not None:
            parts.append(f"regex {self.pattern.pattern!r}")
        return " and ".join(parts)


def compile_when(data: str | Mapping[str, object]) -> When:
    """A schema-valid `when:` value compiled. Raises WhenError saying what is wrong."""
    if isinstance(data, str):
        words = words_of(data)
        if not words:
            raise WhenError("", f"{data!r} has no words to look for (punctuation is ignored)")
        return When(words=tuple((word,) for word in words))
    entries = data.get("words", ())
    regex = data.get("regex")
    # (Values of the wrong type are schema problems, reported already: skipped here.)
    return When(words=_entries(entries if isinstance(entries, list) else []),
                pattern=_pattern(regex) if isinstance(regex, str) else None)


def _entries(entries: Sequence[object]) -> tuple[tuple[str, ...], ...]:
    compiled = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, str):
            continue
        words = words_of(entry)
        if not words:
            raise WhenError("words", f"{entry!r} has no words to look for (punctuation is ignored)", index)
        compiled.append(words)
    return tuple(compiled)


def _pattern(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        at = f" at position {exc.pos}" if exc.pos is not None else ""
        raise WhenError("regex", f"invalid regular expression: {exc.msg}{at}") from None
    except RecursionError:  # sre's parser recurses once per group level
        raise WhenError("regex", "invalid regular expression: groups nested too deeply") from None
    except (OverflowError, ValueError) as exc:  # a repeat count too large for the engine
        raise WhenError("regex", f"invalid regular expression: {exc}") from None
