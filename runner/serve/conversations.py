"""One conversation per connected caller: its slot, transcript, metrics and end.

The caller's parts (source, sink, typed text) come from its front end; the connector is the
server's, shared by every conversation. A conversation ends when the caller hangs up
(`caller.closed` is set, or the task running `converse` is cancelled), when the agent ends it,
or when the server drains; each way, the stream closes in the documented order and the transcript
gets its end record before this returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.config.loader import load_agent
from runner.console import Console
from runner.engine import new_conversation
from runner.errors import RunnerError
from runner.serve.taps import CallerStateTap
from runner.transcript import Transcript

if TYPE_CHECKING:
    from runner.config.model import AgentConfig
    from runner.conversation import Conversation
    from runner.serve.context import ServeContext
    from runner.serve.frontends.base import CallerIO

log = logging.getLogger(__name__)

# After a stop request, how long a conversation may take to close its stream and transcript.
STOP_WAIT_S = 5.0


class CallerTranscript(Transcript):
    """A conversation's transcript that also tells the caller, the metrics and (maybe) stdout."""

    def __init__(self, path: Path | None, listener: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(path)
        self._listener = listener

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        entry = super().write(kind, **fields)
        try:
            self._listener(entry)
        except Exception:  # the caller's side must never break the conversation
            log.exception("transcript listener failed")
        return entry


async def run_caller(ctx: ServeContext, caller: CallerIO, agent: AgentConfig | None = None, *,
                     conversation_id: str | None = None, idle_exit_s: float | None = None) -> None:
    """One conversation of `agent` (the server's default if None) for `caller` (see `converse`)."""
    served = agent or ctx.agent
    with ctx.admit(served):
        conversation_id = conversation_id or new_conversation_id()
        agent = await _agent_for(served, dict(ctx.settings.var_overrides), caller.vars)
        transcript = CallerTranscript(_transcript_path(ctx, conversation_id),
                                      _listener(ctx, caller, conversation_id, served.name))
        console = Console(quiet=True, stream=sys.stderr)
        ctx.metrics.conversations.inc()
        with transcript:
            async with caller.source, caller.sink:
                caller.transcript_open(transcript.write)
                try:
                    await _run(ctx, agent, caller, transcript, console, idle_exit_s)
                finally:
                    caller.transcript_open(None)


def new_conversation_id() -> str:
    return uuid.uuid4().hex[:16]


async def _run(ctx: ServeContext, agent: AgentConfig, caller: CallerIO, transcript: Transcript,
               console: Console, idle_exit_s: float | None) -> None:
    ending: list[Conversation] = []

    def before(kind: str, fields: dict[str, Any]) -> None:
        # The last stream end (written once a stop was asked for): the front end's last word first.
        if kind == "session" and fields.get("event") == "end" and ending and ending[0].stopping:
            caller.transcript_closing()

    transcript.listen(lambda entry: None, before=before)
    conversation = new_conversation(
        agent, ctx.connector_for(agent), source=caller.source, sink=caller.sink, transcript=transcript,
        console=console, text_input=caller.text_input, idle_exit_s=idle_exit_s,
        taps=(ctx.metrics.latency_tap(), CallerStateTap(caller)), phone=getattr(caller, "phone", None))
    ending.append(conversation)
    with ctx.registered(conversation):
        caller.event("state", state="listening")
        run = asyncio.create_task(conversation.run(), name="conversation")
        watch = asyncio.create_task(_end_when_closed(caller, conversation), name="caller-closed")
        try:
            outcome = await asyncio.shield(run)
        except asyncio.CancelledError:  # the front end gave up on the caller: end in order, then go
            conversation.request_stop("caller gone", graceful=False)
            await asyncio.wait({run}, timeout=STOP_WAIT_S)
            raise
        except RunnerError as exc:
            _failed(ctx, caller, str(exc))
            return
        finally:
            watch.cancel()
        if outcome.error:
            _failed(ctx, caller, outcome.reason)


async def _end_when_closed(caller: CallerIO, conversation: Conversation) -> None:
    closed: asyncio.Event | None = getattr(caller, "closed", None)
    if closed is not None:
        await closed.wait()
        # A front end may say why it let go of the caller (an invocation's timeout, say).
        reason = getattr(caller, "close_reason", None) or "caller hung up"
        conversation.request_stop(str(reason), graceful=False)


def _failed(ctx: ServeContext, caller: CallerIO, message: str) -> None:
    ctx.metrics.errors.inc()
    log.warning("conversation ended with an error: %s", message)
    caller.event("error", message=message)


async def _agent_for(agent: AgentConfig, base: Mapping[str, str],
                     call_vars: Mapping[str, str]) -> AgentConfig:
    """The agent with the call's template vars applied (only those the agent declares), over the
    command line's `--var`s (those this agent declares: they apply to every agent served)."""
    overrides = {k: v for k, v in call_vars.items() if k in agent.vars}
    if not overrides:
        return agent
    declared = {k: v for k, v in base.items() if k in agent.vars}
    return await asyncio.to_thread(load_agent, agent.path, {**declared, **overrides})


def _transcript_path(ctx: ServeContext, conversation_id: str) -> Path | None:
    folder = ctx.settings.transcripts
    if folder is None:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return folder / f"{stamp}-{conversation_id}.jsonl"


def _listener(ctx: ServeContext, caller: CallerIO, conversation_id: str,
              agent: str) -> Callable[[dict[str, Any]], None]:
    to_stdout = ctx.settings.stdout_transcripts

    def on_entry(entry: dict[str, Any]) -> None:
        ctx.metrics.transcript_entry(entry, agent)
        if to_stdout:
            line = json.dumps({"conversation": conversation_id, **entry}, ensure_ascii=False)
            print(line, flush=True)
        _tell_caller(caller, entry)

    return on_entry


def _tell_caller(caller: CallerIO, entry: dict[str, Any]) -> None:
    kind = entry["type"]
    if kind in ("user", "assistant"):
        caller.event("transcript", role=kind, text=entry.get("text", ""))
    elif kind == "tool_call":
        caller.event("tool_call", name=entry.get("name"), input=entry.get("input", {}))
    elif kind == "tool_result":
        caller.event("tool_result", name=entry.get("name"), ok="error" not in entry)
    caller.entry(entry)

