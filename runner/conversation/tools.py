"""Tool calls: invoke the handler, fit the result in one event, deliver it to the right stream.

A tool result goes to the stream that issued the call. If that stream is gone, the result is given
to the current stream as interactive USER text (Nova 2) or kept for the next history replay (v1):
never lost, never sent as a toolResult to a stream that did not issue it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from runner.config.model import ToolConfig
from runner.console import Console
from runner.conversation.link import Link
from runner.conversation.record import ConversationRecord
from runner.conversation.state import Live
from runner.errors import LocalProtocolError
from runner.policies.base import CallTool
from runner.protocol.session import EventTooLargeError, SessionState
from runner.protocol.setup import HistoryMessage
from runner.protocol.templates import MAX_EVENT_BYTES
from runner.tools.invoke import PREVIEW_CHARS, ToolOutcome, error_outcome, invoke_tool
from runner.transcript import Transcript

log = logging.getLogger(__name__)


class ToolCalls:
    def __init__(self, tools: Mapping[str, ToolConfig], *, nova2: bool, record: ConversationRecord,
                 transcript: Transcript, console: Console, live: Live,
                 on_result: Callable[[CallTool], None]) -> None:
        self._tools = tools
        self._nova2 = nova2
        self._record = record
        self._transcript = transcript
        self._console = console
        self._live = live
        self._on_result = on_result  # after the result was handed to a stream (or kept)

    def start(self, link: Link, call: CallTool) -> None:
        """Run the call in its own task: the reader goes on (an interruption must be seen)."""
        self._live.tools_running += 1
        self._live.spawn(self._call(link, call), name=f"tool:{call.name}")

    async def _call(self, link: Link, call: CallTool) -> None:
        try:
            self._transcript.write("tool_call", name=call.name, input=dict(call.arguments),
                                   tool_use_id=call.tool_use_id)
            self._console.tool_call(call.name, dict(call.arguments))
            outcome = self._fit_in_one_event(link, call, await self._invoke(call))
            entry: dict[str, Any] = {"name": call.name, "tool_use_id": call.tool_use_id,
                                     "duration_ms": round(outcome.duration_ms, 1)}
            if outcome.error is None:
                entry["result"] = _loads(outcome.result_json)
            else:
                entry["error"] = outcome.error
            if outcome.oversized_preview is not None:
                # What the handler returned, cut short and marked as such: never a whole megabyte.
                entry["result_truncated"] = outcome.oversized_preview
            self._transcript.write("tool_result", **entry)
            self._console.tool_result(call.name, outcome.error or outcome.result_json, outcome.duration_ms,
                                      outcome.error is None)
            self._deliver(link, call, outcome.result_json)
            self._on_result(call)
        finally:
            self._live.tools_running -= 1
            self._live.touch()

    def _fit_in_one_event(self, link: Link, call: CallTool, outcome: ToolOutcome) -> ToolOutcome:
        """A result whose toolResult event would be over the event size limit becomes an error
        result (an event template can inflate any result; max_result_bytes alone cannot)."""
        if not outcome.ok:
            return outcome
        try:
            link.session.check_tool_result(outcome.result_json)
        except EventTooLargeError as exc:
            error = (f"result too large for one event: its toolResult event would be {exc.size} bytes "
                     f"(at most {MAX_EVENT_BYTES})")
            return error_outcome(call.name, error, outcome.duration_ms, outcome.result_json[:PREVIEW_CHARS])
        return outcome

    async def _invoke(self, call: CallTool) -> ToolOutcome:
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "no tools"
            error = f"unknown tool {call.name!r}; this agent has: {known}"
            return ToolOutcome(False, json.dumps({"error": error, "tool": call.name}), error, 0.0)
        return await invoke_tool(tool.function, call.arguments, input_schema=tool.input_schema,
                                 timeout_s=tool.timeout_s, name=tool.name,
                                 max_result_bytes=tool.max_result_bytes)

    def _deliver(self, link: Link, call: CallTool, result_json: str) -> None:
        if link.usable and self._live.link is link:
            try:
                link.session.send_tool_result(call.tool_use_id, result_json)
            except EventTooLargeError as exc:  # even the error result: an event template inflates it
                self._live.request_stop(str(exc), code=1, graceful=False, error=True)
            except LocalProtocolError as exc:
                log.warning("tool result for %s not sent: %s", call.name, exc)
            link.kick()
            return
        # The stream that asked is gone: a toolResult for it would be invalid on any other
        # stream (§2.5 rule 6), so the new stream hears it as the user's text instead.
        note = f"(Result of the {call.name} tool requested earlier: {result_json})"
        current = self._live.link
        if (current is not None and self._nova2 and not current.closing
                and current.session.state is SessionState.STREAMING):
            self._record.expect_echo(note, add_to_history=True)
            current.session.send_text(note)
            current.kick()
        else:
            self._record.keep(HistoryMessage("USER", note))


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
