"""What a conversation policy is: a pure mapping from the model's output events to actions.

Theory of operation: the engine feeds every decoded output event to `on_event` and carries out the
returned actions in order (play audio, flush playback, mark the answer interrupted in the
transcript, call a tool). Before each microphone frame it asks `mic_open`; when the answer is False
it sends silence instead (audio must keep flowing, or the service times out). Policies do no I/O
and keep only the state they need to decide, so they are tested with plain event lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner.protocol.events import OutputEvent


@dataclass(frozen=True, slots=True)
class Play:
    """Queue assistant audio for playback."""

    content_id: str
    pcm: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FlushPlayback:
    """Drop all queued, unplayed assistant audio at once (barge-in)."""


@dataclass(frozen=True, slots=True)
class MarkInterrupted:
    """Record that the current answer was interrupted (transcript `interrupted` entry)."""

    content_id: str


@dataclass(frozen=True, slots=True)
class CallTool:
    """Run a tool; its result goes back with `Session.send_tool_result(tool_use_id, ...)`."""

    name: str
    tool_use_id: str
    arguments: Mapping[str, Any]


Action = Play | FlushPlayback | MarkInterrupted | CallTool


class ConversationPolicy(Protocol):
    # The registry key (`policy:` in an agent file).
    name: str

    # Actions for one output event, in the order the engine must carry them out.
    def on_event(self, event: OutputEvent) -> list[Action]: ...

    # Whether the microphone's audio goes to the model now (else silence is sent).
    def mic_open(self, assistant_audio_pending: bool) -> bool: ...
