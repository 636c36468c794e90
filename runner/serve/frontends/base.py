"""The interface between the server and its front ends (browser `/ws`, Twilio, ...).

A front end owns a transport: it accepts a connection (after `ctx.authorized(conn)`), turns it
into a `CallerIO` (an AudioSource of the caller's speech, an AudioSink for the assistant's, typed
text, template vars, and `event()` for what the caller should see), and awaits
`converse(ctx, caller)`, which runs one Conversation for it. Capacity, metrics, the transcript and
drain are handled inside `converse`: when the server is full or draining it raises
`CallerRefused` before anything starts, and the front end refuses the caller its own way
(WebSocket close 1013 with the reason, HTTP 503).

Events a caller gets through `CallerIO.event(kind, **fields)` (front ends translate them):
- "transcript": role="user"|"assistant", text=...
- "tool_call": name=..., input={...};  "tool_result": name=..., ok=bool
- "interrupted": playback must stop at once (the sink was flushed too)
- "state": state="listening"|"thinking"|"speaking"
- "error": message=...  (the conversation ended with an error)

Adding a provider is one module with a class satisfying `FrontEnd` and one entry in FRONT_ENDS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from runner.audio.base import AudioSink, AudioSource
from runner.conversation.text import TextInput
from runner.serve.context import ServeContext
from runner.serve.errors import CallerRefused

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = ["FRONT_ENDS", "CallerIO", "CallerRefused", "FrontEnd", "ServeContext", "converse", "register"]


class CallerIO(Protocol):
    """What one connected caller gives the conversation."""

    source: AudioSource  # caller audio, 16-bit mono PCM at the agent's input rate; never ends
    sink: AudioSink  # assistant audio to the caller (flush() = barge-in)
    text_input: TextInput | None  # typed text (browser), DTMF as text (twilio), or None
    vars: Mapping[str, str]  # template vars from the call (callSid, custom parameters)
    # Set by the front end when the caller has gone (hung up, socket closed): the conversation then
    # ends in order. (Cancelling the task that awaits `converse` does the same.)
    closed: asyncio.Event

    def event(self, kind: str, **fields: Any) -> None:
        """Something the caller should see (see the module docstring); must not block or raise."""
        ...


class FrontEnd(Protocol):
    name: str

    def routes(self, ctx: ServeContext) -> list[BaseRoute]:
        """The Starlette routes this front end serves (its endpoints check `ctx.authorized`)."""
        ...


FRONT_ENDS: dict[str, type[FrontEnd]] = {}


def register(front_end: type[FrontEnd]) -> type[FrontEnd]:
    """Class decorator: `@register` adds a front end to FRONT_ENDS under its `name`."""
    FRONT_ENDS[front_end.name] = front_end
    return front_end


async def converse(ctx: ServeContext, caller: CallerIO) -> None:
    """Run one conversation for a connected caller; returns when it has ended.

    Raises CallerRefused (before anything starts) when the server is full or draining. The caller's
    source and sink are entered and closed here; the transcript is complete when this returns.
    """
    from runner.serve.conversations import run_caller

    await run_caller(ctx, caller)
