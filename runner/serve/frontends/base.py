"""The interface between the server and its front ends (browser `/ws`, Twilio, ...).

A front end owns a transport. Its endpoint checks `ctx.authorized(conn)` (the token), picks the
agent the caller asked for (`ctx.agent_named(name)`, raising UnknownAgent; the default agent when
none is named), calls `ctx.check_admission()` before greeting the caller (raises CallerRefused
when full or draining), turns the connection into a `CallerIO` (an AudioSource of the caller's
speech at the agent's `audio.input_sample_rate`, an AudioSink for the assistant's at
`output_sample_rate`, typed text when `ctx.takes_text(agent)`, template vars, `closed`, `event()`
for what the caller should see, and the transcript hooks) and awaits `converse(ctx, caller,
agent)`, which runs one Conversation for it. Capacity,
metrics, the transcript and drain are handled inside `converse`; it too raises CallerRefused
before anything starts if the last slot went meanwhile. The front end refuses the caller its own
way (WebSocket close 1013 with the reason, HTTP 503; an unknown agent 4404 / 404) and, once
`converse` returns, hangs up (close 1001 when the server's drain ended the call).

Events a caller gets through `CallerIO.event(kind, **fields)` (front ends translate them):
- "transcript": role="user"|"assistant", text=...
- "tool_call": name=..., input={...};  "tool_result": name=..., ok=bool
- "state": state="listening"|"thinking"|"speaking"
- "error": message=...  (the conversation ended with an error)
Barge-in is not an event: the conversation calls `sink.flush()`, and the front end's sink tells
its transport (the browser's `{"type": "interrupted"}`, Twilio's `clear`).

Adding a provider is one module in this package with a class satisfying `FrontEnd`, decorated
with `@register` (the app imports every module here and serves every registered front end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from runner.audio.base import AudioSink, AudioSource
from runner.conversation.text import TextInput
from runner.serve.context import ServeContext
from runner.serve.errors import CallerRefused, UnknownAgent

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from runner.config.model import AgentConfig

__all__ = ["FRONT_ENDS", "CallerIO", "CallerRefused", "FrontEnd", "ServeContext", "TranscriptWrite",
           "UnknownAgent", "converse", "register"]

type TranscriptWrite = Callable[..., object]


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

    def transcript_open(self, write: TranscriptWrite | None) -> None:
        """The conversation's transcript opened (`write(kind, **fields)` adds an entry, e.g. Twilio's
        `heard`; entries go in only while the conversation runs, before its end record), or (None)
        the conversation has ended: write nothing more."""
        ...

    def entry(self, entry: dict[str, Any]) -> None:
        """Every entry of the conversation's transcript, as written (must not block or raise)."""
        ...

    def transcript_closing(self) -> None:
        """The conversation is ending: its transcript's last stream end is about to be written, and
        what the front end still has to say goes in now (Twilio: what played of an answer a drain
        cuts short). Must not block or raise."""
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


async def converse(ctx: ServeContext, caller: CallerIO, agent: AgentConfig | None = None) -> None:
    """Run one conversation of `agent` (the default agent if None) for a connected caller; returns
    when it has ended.

    Raises CallerRefused (before anything starts) when the server is full or draining. The caller's
    source and sink are entered and closed here; the transcript is complete when this returns.
    """
    from runner.serve.conversations import run_caller

    await run_caller(ctx, caller, agent)
