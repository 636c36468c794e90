"""What happened in one turn of a test case: the input, what the model heard, what the assistant
said and did, and when. Built by the harness from the conversation's timeline; expectations read
it and nothing else, so they are pure functions tested without a conversation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    name: str
    arguments: Mapping[str, Any]
    result: Any = None
    error: str | None = None
    duration_ms: float | None = None  # None: no result came within the turn


@dataclass(frozen=True, slots=True)
class TurnRecord:
    index: int  # 1-based
    input: str  # as shown: `you (typed): ...`, `you (speech): ...`, `(waiting for the assistant)`
    heard: tuple[str, ...] = ()
    said: tuple[str, ...] = ()
    tool_calls: tuple[ToolCallRecord, ...] = ()
    interrupted: bool = False
    # From the end of the user's input to the assistant's first audio; None: no audio came.
    first_audio_ms: float | None = None
    # The session's total tokens as last reported by the model by the end of the turn.
    total_tokens: int | None = None
    # The turn as readable lines, in order (shown with a failure).
    lines: tuple[str, ...] = field(default=())
    # Why the turn did not finish normally (a timeout, the conversation ended), if it did not.
    problem: str | None = None
    # Whether its input was sent (False: the driver timed out waiting to send it).
    sent: bool = True
    # Why the call ended in this turn (a `call_ended` transcript entry's reason), if it did.
    ended: str | None = None

    @property
    def said_text(self) -> str:
        return " ".join(self.said)

    @property
    def heard_text(self) -> str:
        return " ".join(self.heard)


def compact(value: Any, limit: int = 200) -> str:
    """A value as short JSON for a message."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except ValueError:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
