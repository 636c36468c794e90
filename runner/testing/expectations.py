"""What a turn must show: one small class per expectation kind, and the registry.

Each kind parses its YAML value (already checked against schemas/agent-test.schema.json; a value
the schema cannot judge, such as a regular expression, raises ValueError with the reason), says
what it expects (`describe`), and checks a `TurnRecord`: None when it holds, else what happened
instead. Adding a kind = a class here, an entry in EXPECTATIONS and a property in the schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runner.testing.model import Where
from runner.testing.record import ToolCallRecord, TurnRecord, compact


class Expectation(Protocol):
    @property
    def where(self) -> Where:
        """The expectation's place in the test file (a failure points at it)."""
        ...

    def describe(self) -> str:
        """What is expected, in words (`a call of trackOrderTool with orderId="12345"`)."""
        ...

    def check(self, turn: TurnRecord) -> str | None:
        """None when the turn shows it; else what happened instead."""
        ...


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, slots=True)
class TextMatch:
    """Case-insensitive checks of a text: all of `contains`, none of `not_contains`, the regexes."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    not_regex: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, value: Any) -> TextMatch:
        if isinstance(value, str):
            return cls(contains=(value,))
        return cls(contains=_texts(value.get("contains")), not_contains=_texts(value.get("not_contains")),
                    regex=_regex(value["regex"]) if "regex" in value else None,
                    not_regex=_regex(value["not_regex"]) if "not_regex" in value else None)

    def describe(self) -> str:
        parts = [f"contains {t!r}" for t in self.contains]
        parts += [f"does not contain {t!r}" for t in self.not_contains]
        if self.regex is not None:
            parts.append(f"matches /{self.regex.pattern}/")
        if self.not_regex is not None:
            parts.append(f"does not match /{self.not_regex.pattern}/")
        return " and ".join(parts)

    def check(self, text: str) -> str | None:
        folded = text.casefold()
        for wanted in self.contains:
            if wanted.casefold() not in folded:
                return f"no {wanted!r}"
        for unwanted in self.not_contains:
            if unwanted.casefold() in folded:
                return f"{unwanted!r} is there"
        if self.regex is not None and self.regex.search(text) is None:
            return f"no match for /{self.regex.pattern}/"
        if self.not_regex is not None and (found := self.not_regex.search(text)) is not None:
            return f"/{self.not_regex.pattern}/ matches {found.group()!r}"
        return None


@dataclass(frozen=True, slots=True)
class ToolCalled:
    where: Where
    name: str
    args: Mapping[str, Any]
    args_regex: Mapping[str, re.Pattern[str]]

    @classmethod
    def parse(cls, value: Any, where: Where) -> ToolCalled:
        if isinstance(value, str):
            return cls(where, value, {}, {})
        regexes = {key: _regex(pattern) for key, pattern in (value.get("args_regex") or {}).items()}
        return cls(where, value["name"], dict(value.get("args") or {}), regexes)

    def describe(self) -> str:
        conditions = [f"{key}={compact(v)}" for key, v in self.args.items()]
        conditions += [f"{key}~/{p.pattern}/" for key, p in self.args_regex.items()]
        return f"a call of {self.name}" + (f" with {', '.join(conditions)}" if conditions else "")

    def check(self, turn: TurnRecord) -> str | None:
        calls = [c for c in turn.tool_calls if c.name == self.name]
        if any(self._matches(c) for c in calls):
            return None
        if calls:
            return "; ".join(f"{c.name} was called with {compact(dict(c.arguments))}" for c in calls)
        if turn.tool_calls:
            return "only " + ", ".join(sorted({c.name for c in turn.tool_calls})) + " called"
        return "no tool was called"

    def _matches(self, call: ToolCallRecord) -> bool:
        for key, wanted in self.args.items():
            if key not in call.arguments or not _subset(wanted, call.arguments[key]):
                return False
        for key, pattern in self.args_regex.items():
            if key not in call.arguments or pattern.search(_as_text(call.arguments[key])) is None:
                return False
        return True


def _subset(wanted: Any, got: Any) -> bool:
    """`got` holds `wanted`: mappings by their keys (recursively), everything else by equality."""
    if isinstance(wanted, Mapping):
        return isinstance(got, Mapping) and all(k in got and _subset(v, got[k]) for k, v in wanted.items())
    if isinstance(wanted, bool) or isinstance(got, bool):
        return wanted is got
    return bool(wanted == got)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else compact(value)


@dataclass(frozen=True, slots=True)
class NoToolCalled:
    where: Where
    name: str | None  # None: no tool at all

    @classmethod
    def parse(cls, value: Any, where: Where) -> NoToolCalled:
        return cls(where, None if value is True else value)

    def describe(self) -> str:
        return "no tool call" if self.name is None else f"no call of {self.name}"

    def check(self, turn: TurnRecord) -> str | None:
        calls = [c for c in turn.tool_calls if self.name is None or c.name == self.name]
        if not calls:
            return None
        return "; ".join(f"{c.name} was called with {compact(dict(c.arguments))}" for c in calls)


@dataclass(frozen=True, slots=True)
class Says:
    where: Where
    match: TextMatch

    @classmethod
    def parse(cls, value: Any, where: Where) -> Says:
        return cls(where, TextMatch.parse(value))

    def describe(self) -> str:
        return f"the assistant's words: {self.match.describe()}"

    def check(self, turn: TurnRecord) -> str | None:
        why = self.match.check(turn.said_text)
        if why is None:
            return None
        return f"{why} in what the assistant said: {turn.said_text!r}" if turn.said else \
            "the assistant said nothing"


@dataclass(frozen=True, slots=True)
class Heard:
    where: Where
    match: TextMatch

    @classmethod
    def parse(cls, value: Any, where: Where) -> Heard:
        return cls(where, TextMatch.parse(value))

    def describe(self) -> str:
        return f"what the model heard: {self.match.describe()}"

    def check(self, turn: TurnRecord) -> str | None:
        why = self.match.check(turn.heard_text)
        if why is None:
            return None
        return f"{why} in what the model heard: {turn.heard_text!r}" if turn.heard else \
            "the model reported hearing nothing (no USER transcript)"


@dataclass(frozen=True, slots=True)
class Interrupted:
    where: Where
    expected: bool

    @classmethod
    def parse(cls, value: Any, where: Where) -> Interrupted:
        return cls(where, bool(value))

    def describe(self) -> str:
        return "the assistant was interrupted" if self.expected else "no interruption"

    def check(self, turn: TurnRecord) -> str | None:
        if turn.interrupted == self.expected:
            return None
        return "the assistant was interrupted" if turn.interrupted else "the assistant was not interrupted"


@dataclass(frozen=True, slots=True)
class FirstAudioWithin:
    where: Where
    limit_ms: int

    @classmethod
    def parse(cls, value: Any, where: Where) -> FirstAudioWithin:
        return cls(where, int(value))

    def describe(self) -> str:
        return f"the assistant's first audio within {self.limit_ms} ms of the end of the input"

    def check(self, turn: TurnRecord) -> str | None:
        if turn.first_audio_ms is None:
            return "no assistant audio came"
        if turn.first_audio_ms <= self.limit_ms:
            return None
        return f"the first audio came after {turn.first_audio_ms:.0f} ms"


@dataclass(frozen=True, slots=True)
class ToolLatencyBelow:
    where: Where
    limit_ms: int

    @classmethod
    def parse(cls, value: Any, where: Where) -> ToolLatencyBelow:
        return cls(where, int(value))

    def describe(self) -> str:
        return f"every tool call below {self.limit_ms} ms"

    def check(self, turn: TurnRecord) -> str | None:
        slow = [c for c in turn.tool_calls if c.duration_ms is None or c.duration_ms >= self.limit_ms]
        if not slow:
            return None
        return "; ".join(f"{c.name} took {c.duration_ms:.0f} ms" if c.duration_ms is not None
                         else f"{c.name} gave no result" for c in slow)


@dataclass(frozen=True, slots=True)
class TokensBelow:
    where: Where
    limit: int

    @classmethod
    def parse(cls, value: Any, where: Where) -> TokensBelow:
        return cls(where, int(value))

    def describe(self) -> str:
        return f"fewer than {self.limit} tokens in the session"

    def check(self, turn: TurnRecord) -> str | None:
        if turn.total_tokens is None:
            return "the model reported no token usage"
        if turn.total_tokens < self.limit:
            return None
        return f"{turn.total_tokens} tokens used"


@dataclass(frozen=True, slots=True)
class Ended:
    """The call ended (runner.conversation.control) for this reason in the turn."""

    where: Where
    reason: str

    @classmethod
    def parse(cls, value: Any, where: Where) -> Ended:
        return cls(where, str(value))

    def describe(self) -> str:
        return f"the call to end ({self.reason})"

    def check(self, turn: TurnRecord) -> str | None:
        if turn.ended == self.reason:
            return None
        return f"it ended for another reason: {turn.ended}" if turn.ended else "the call did not end"


Parser = Callable[[Any, Where], Expectation]

# The `expect:` keys; each parses its value into an Expectation.
EXPECTATIONS: dict[str, Parser] = {
    "tool_called": ToolCalled.parse,
    "no_tool_called": NoToolCalled.parse,
    "says": Says.parse,
    "heard": Heard.parse,
    "interrupted": Interrupted.parse,
    "first_audio_within_ms": FirstAudioWithin.parse,
    "tool_latency_below_ms": ToolLatencyBelow.parse,
    "tokens_below": TokensBelow.parse,
    "ended": Ended.parse,
}


def failure_message(expectation: Expectation, instead: str, turn: TurnRecord) -> str:
    """What a user sees for a failed expectation: where, what was expected, what happened, and the
    turn's transcript."""
    lines = [f"{expectation.where}: expected {expectation.describe()}",
             f"  but: {instead}",
             f"  turn {turn.index}:"]
    lines += [f"    {line}" for line in turn.lines or ("(nothing happened)",)]
    return "\n".join(lines)
