"""Conversation policies, by the name an agent file uses (`policy: simple | barge-in`)."""

from __future__ import annotations

from collections.abc import Callable

from runner.policies.barge_in import BargeInPolicy
from runner.policies.base import (
    Action,
    CallTool,
    ConversationPolicy,
    FlushPlayback,
    MarkInterrupted,
    Play,
)
from runner.policies.simple import SimplePolicy

POLICIES: dict[str, Callable[[], ConversationPolicy]] = {
    "simple": SimplePolicy,
    "barge-in": BargeInPolicy,
}
POLICY_NAMES: tuple[str, ...] = tuple(sorted(POLICIES))

__all__ = ["POLICIES", "POLICY_NAMES", "Action", "BargeInPolicy", "CallTool", "ConversationPolicy",
           "FlushPlayback", "MarkInterrupted", "Play", "SimplePolicy"]
