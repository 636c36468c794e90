"""One conversation on one Nova Sonic stream: the loops that move audio, events and tool calls.

Theory of operation
- The Session (sans-IO) decides what goes on the wire and in which order; this module only moves
  bytes between it and the world. Every task runs in one TaskGroup, so none outlives the stream.
- mic:    source.read() (paced in real time) -> policy gate (silence while muted) -> send_audio
- writer: the ONLY task that sends; drains session.data_to_send() in order, so a text or tool
          block (queued atomically) can never be split by audio.
- reader: stream.receive() -> session.receive_data() -> policy actions, transcript, console.
- player: Play actions pass through a bounded queue to the sink, so a full sink never stalls
          the reader: an interruption must be seen at once, not after 30 s of queued audio.
- tools:  one task per call; the result returns through the session (always JSON).
- The stopper waits for a reason to stop (signal, input played and conversation idle, time
  limit, stream ended) and then closes in the documented order within a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.audio.base import AudioSink, AudioSource
from runner.config.model import ToolConfig
from runner.console import Console
from runner.errors import LocalProtocolError, TransportError
from runner.policies.base import Action, CallTool, ConversationPolicy, FlushPlayback, MarkInterrupted, Play
from runner.protocol.events import (
    AudioOutput,
    ContentEnd,
    ContentStart,
    OutputEvent,
    TextOutput,
    ToolUse,
    UnknownEvent,
    UsageEvent,
)
from runner.protocol.history import HistoryRecorder
from runner.protocol.session import Session
from runner.tools.invoke import invoke_tool
from runner.transcript import Transcript
from runner.transports.base import Stream

log = logging.getLogger("runner.conversation")

PLAY_QUEUE_CHUNKS = 4096  # ~2-4 minutes of Nova's audioOutput chunks: bounded, never reached in practice
WRITER_DRAIN_S = 0.5
CLOSE_INPUT_S = 0.7
READER_FINISH_S = 0.5


@dataclass
class StopRequest:
    """Why the conversation is stopping; `code` becomes the process exit code."""

    reason: str
    code: int = 0
    graceful: bool = True


class _Stopped(Exception):
    """Raised inside the TaskGroup to unwind every task once closing is done."""


@dataclass(frozen=True, slots=True)
class ConversationOptions:
    # End once the input has been played and nothing happened for this long (file input).
    idle_exit_s: float | None = None
    max_duration_s: float | None = None


class Conversation:
    """Runs a Session over a Stream with an audio source, a sink, tools and a policy."""

    def __init__(self, *, session: Session, stream: Stream, source: AudioSource, sink: AudioSink,
                 policy: ConversationPolicy, tools: Mapping[str, ToolConfig], transcript: Transcript,
                 console: Console, options: ConversationOptions,
                 input_finished: Callable[[], bool] = lambda: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.stream = stream
        self.source = source
        self.sink = sink
        self.policy = policy
        self.tools = tools
        self.transcript = transcript
        self.console = console
        self.options = options
        self._input_finished = input_finished
        self._clock = clock
        self._history = HistoryRecorder()
        self._wake_writer = asyncio.Event()
        self._writer_idle = asyncio.Event()
        self._writer_idle.set()
        self._reader_done = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stop: StopRequest | None = None
        self._play_queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=PLAY_QUEUE_CHUNKS)
        self._tools_running = 0
        self._last_activity = clock()
        self._input_done_at: float | None = None
        self._closing = False
        self._last_usage: UsageEvent | None = None
        self._usage_written: UsageEvent | None = None

    # -- public ------------------------------------------------------------------------------

    def request_stop(self, reason: str, *, code: int = 0, graceful: bool = True) -> None:
        """Ask the conversation to end (first reason wins). Safe from signal handlers."""
        if self._stop is None:
            self._stop = StopRequest(reason, code, graceful)
        self._stop_event.set()

    async def run(self) -> StopRequest:
        """Run until a stop is requested or the stream fails; returns why it stopped.

        Raises TransportError when the stream fails (the service's message is kept).
        """
        self.session.start()
        self._kick_writer()
        failure: TransportError | None = None
        task = asyncio.current_task()
        cancelling_before = task.cancelling() if task is not None else 0
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._writer(), name="writer")
                tg.create_task(self._reader(), name="reader")
                tg.create_task(self._mic(), name="mic")
                tg.create_task(self._player(), name="player")
                tg.create_task(self._stopper(), name="stopper")
        except* _Stopped:
            pass
        except* TransportError as group:
            failure = _first(group)
        # CPython 3.12.0-3.12.2: a TaskGroup whose child failed leaves its parent task marked as
        # cancelling (gh-116720), which would break every later asyncio.timeout in this task.
        while task is not None and task.cancelling() > cancelling_before:
            task.uncancel()
        self._write_usage()
        if failure is not None:
            raise failure
        assert self._stop is not None
        return self._stop

    # -- tasks -------------------------------------------------------------------------------

    def _kick_writer(self) -> None:
        self._writer_idle.clear()
        self._wake_writer.set()

    async def _writer(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            for payload in self.session.data_to_send():
                await self.stream.send(payload)
            if not self._wake_writer.is_set():
                self._writer_idle.set()

    async def _mic(self) -> None:
        while not self._closing:
            chunk = await self.source.read()
            pending = self.sink.pending_ms() > 0 or not self._play_queue.empty()
            if not self.policy.mic_open(pending):
                chunk = bytes(len(chunk))
            if self._closing:
                return
            self.session.send_audio(chunk)
            self._kick_writer()

    async def _reader(self) -> None:
        try:
            while True:
                payload = await self.stream.receive()
                if payload is None:
                    if self._closing:
                        return
                    raise TransportError("the service closed the stream unexpectedly",
                                         kind="StreamReset", retryable=True)
                for event in self.session.receive_data(payload):
                    self._last_activity = self._clock()
                    await self._on_event(event)
        finally:
            self._reader_done.set()

    async def _player(self) -> None:
        while True:
            pcm = await self._play_queue.get()
            await self.sink.write(pcm)

    async def _stopper(self) -> None:
        await self._wait_for_stop_reason()
        assert self._stop is not None
        await self._close(graceful=self._stop.graceful)
        raise _Stopped

    # -- events ------------------------------------------------------------------------------

    async def _on_event(self, event: OutputEvent) -> None:
        self.console.raw("<-", _summary(event))
        message = self._history.feed(event)
        if message is not None:
            kind = "user" if message.role == "USER" else "assistant"
            self.transcript.write(kind, text=message.text)
            (self.console.user if kind == "user" else self.console.assistant)(message.text)
        match event:
            case UsageEvent():
                self._last_usage = event
            case ContentStart(role=role) if event.type.value == "AUDIO":
                self.console.status(f"{role.value.lower()} speaking")
            case ContentEnd(stop_reason="END_TURN"):
                self._write_usage()
                self.console.status("listening")
            case UnknownEvent():
                log.info("ignoring unknown output event %s", event.name)
            case _:
                pass
        for action in self.policy.on_event(event):
            await self._apply(action)

    async def _apply(self, action: Action) -> None:
        match action:
            case Play(pcm=pcm):
                # Blocks only with minutes of audio queued: backpressure, not loss.
                await self._play_queue.put(pcm)
            case FlushPlayback():
                dropped = _drain(self._play_queue)
                dropped += self.sink.flush()
                log.debug("barge-in: dropped %d bytes of assistant audio", dropped)
            case MarkInterrupted(content_id=content_id):
                self.transcript.write("interrupted", content_id=content_id)
                self.console.interrupted()
            case CallTool():
                self._tools_running += 1
                self._tg.create_task(self._call_tool(action), name=f"tool:{action.name}")

    async def _call_tool(self, call: CallTool) -> None:
        try:
            self.transcript.write("tool_call", name=call.name, input=dict(call.arguments),
                                  tool_use_id=call.tool_use_id)
            self.console.tool_call(call.name, dict(call.arguments))
            tool = self.tools.get(call.name)
            error: str | None
            if tool is None:
                result_json, error, duration_ms = _unknown_tool(call.name, self.tools)
            else:
                outcome = await invoke_tool(tool.function, call.arguments, input_schema=tool.input_schema,
                                            timeout_s=tool.timeout_s, name=tool.name)
                result_json, error, duration_ms = outcome.result_json, outcome.error, outcome.duration_ms
            entry: dict[str, Any] = {"name": call.name, "tool_use_id": call.tool_use_id,
                                     "duration_ms": round(duration_ms, 1)}
            if error is None:
                entry["result"] = _loads(result_json)
            else:
                entry["error"] = error
            self.transcript.write("tool_result", **entry)
            self.console.tool_result(call.name, error or result_json, duration_ms, error is None)
            if self._closing:
                return
            try:
                self.session.send_tool_result(call.tool_use_id, result_json)
            except LocalProtocolError as exc:
                log.warning("tool result for %s not sent: %s", call.name, exc)
            self._kick_writer()
        finally:
            self._tools_running -= 1
            self._last_activity = self._clock()

    # -- stopping ----------------------------------------------------------------------------

    async def _wait_for_stop_reason(self) -> None:
        started = self._clock()
        while not self._stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._stop_event.wait()
            now = self._clock()
            limit = self.options.max_duration_s
            if limit is not None and now - started >= limit:
                self.request_stop(f"reached --max-duration ({limit:g} s)")
            elif self._idle_done(now):
                self.request_stop("input finished and the conversation is idle")

    def _idle_done(self, now: float) -> bool:
        idle = self.options.idle_exit_s
        if idle is None or not self._input_finished():
            return False
        if self._input_done_at is None:
            self._input_done_at = now
        busy = (self._tools_running > 0 or self.session.pending_tool_uses
                or self.session.assistant_answering or self.sink.pending_ms() > 0
                or not self._play_queue.empty())
        quiet_since = max(self._last_activity, self._input_done_at)
        return not busy and now - quiet_since >= idle

    async def _close(self, *, graceful: bool) -> None:
        """End the session in the documented order, bounded in time (Ctrl-C must exit in 2 s)."""
        self._closing = True
        with contextlib.suppress(LocalProtocolError):
            self.session.end()
        self._kick_writer()
        await _within(self._writer_idle.wait(), WRITER_DRAIN_S)
        await self.stream.close_input(CLOSE_INPUT_S)
        await _within(self._reader_done.wait(), READER_FINISH_S)
        if graceful:
            # Let the recording/speaker finish the answer that was already received.
            await self.sink.wait_drained(30.0)

    def _write_usage(self) -> None:
        usage = self._last_usage
        if usage is None or usage is self._usage_written:
            return
        self._usage_written = usage
        self.transcript.write("usage", input_tokens=usage.total_input_tokens,
                              output_tokens=usage.total_output_tokens, total_tokens=usage.total_tokens)


async def _within(awaitable: Any, limit_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            await awaitable


def _drain(queue: asyncio.Queue[bytes]) -> int:
    dropped = 0
    while not queue.empty():
        dropped += len(queue.get_nowait())
    return dropped


def _first(group: BaseExceptionGroup[TransportError]) -> TransportError:
    for exc in group.exceptions:
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
    raise group


def _unknown_tool(name: str, tools: Mapping[str, ToolConfig]) -> tuple[str, str, float]:
    import json

    error = f"unknown tool {name!r}; this agent has: {', '.join(sorted(tools)) or 'no tools'}"
    return json.dumps({"error": error, "tool": name}), error, 0.0


def _loads(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _summary(event: OutputEvent) -> str:
    match event:
        case AudioOutput():
            return f"audioOutput {len(event.pcm)} bytes"
        case TextOutput():
            return f"textOutput {event.role.value}: {event.content[:80]!r}"
        case ToolUse():
            return f"toolUse {event.tool_name} {dict(event.arguments)}"
        case ContentStart():
            return f"contentStart {event.type.value} {event.role.value} {event.generation_stage or ''}"
        case ContentEnd():
            return f"contentEnd {event.type.value} {event.stop_reason or ''}"
        case _:
            return type(event).__name__
