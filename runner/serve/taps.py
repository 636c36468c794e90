"""An EventTap that tells the caller the conversation's state: listening, thinking, speaking."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.protocol.events import AudioOutput, ContentEnd, ContentType

if TYPE_CHECKING:
    from runner.protocol.events import OutputEvent
    from runner.serve.frontends.base import CallerIO


class CallerStateTap:
    def __init__(self, caller: CallerIO) -> None:
        self._caller = caller
        self._state = "listening"

    def output(self, event: OutputEvent, at: float) -> None:
        if isinstance(event, AudioOutput):
            self._set("speaking")
        elif isinstance(event, ContentEnd) and event.type is ContentType.AUDIO:
            self._set("listening")

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        if kind == "user_text" or (kind == "audio" and fields.get("speaking") is False):
            self._set("thinking")

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._caller.event("state", state=state)
