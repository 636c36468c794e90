"""`POST /invocations` (AgentCore Runtime's request/response contract): one typed turn, answered.

The body is JSON: `{"prompt": "...", "agent": "orders"}` (`text` is taken for `prompt`; `agent`
may also be the query's `?agent=`; none means the default agent). The server runs a new
conversation in text mode (Nova 2 cross-modal input: the session streams silence underneath, the
assistant's speech goes nowhere, at once), sends the prompt as one typed line, lets the agent
answer it (tool calls included), then ends the conversation once it has been idle for
IDLE_AFTER_ANSWER_S. The transcript is written like any conversation's.

Answer: `{"reply": "...", "tool_calls": [{"name", "input", "ok"}], "conversation": ID}`; with
`Accept: text/event-stream`, the transcript entries as server-sent events (`event: entry`) as they
are written, then one `event: result` with that same object. Errors are JSON `{"error": ...}`:
400 (bad body, or an agent whose model takes no typed input), 403 (token), 404 (unknown agent),
413 (body over 64 KB), 503 (full or draining, like every caller), 504 (no answer within
`--invocation-timeout`; the conversation is ended in order), 502 (the conversation failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runner.audio.base import AudioFormat, AudioSink, AudioSource, SinkStatistics
from runner.audio.null import NullSource
from runner.conversation.text import QueueTextInput, TextInput
from runner.serve.frontends.base import CallerRefused, TranscriptWrite, UnknownAgent, register

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from runner.config.model import AgentConfig
    from runner.serve.context import ServeContext

log = logging.getLogger(__name__)

PATH = "/invocations"
MAX_BODY_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 8000
# After the answer (and any tool calls) the conversation ends once it has been this quiet.
IDLE_AFTER_ANSWER_S = 1.0
ENTRY_QUEUE = 1024  # SSE: transcript entries waiting to go out


class DiscardSink:
    """The assistant's speech, dropped as it comes: nobody listens to an invocation."""

    # Nothing is played, so a turn has no "first sample played" (runner.telemetry.meter reads this).
    played_known = False

    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._written = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pass

    async def write(self, pcm: bytes) -> None:
        self._written += len(pcm)

    def flush(self) -> int:
        return 0

    def pending_ms(self) -> float:
        return 0.0

    def failure(self) -> str | None:
        return None

    async def wait_drained(self, timeout: float) -> bool:  # noqa: ASYNC109  (the protocol's signature)
        return True

    def statistics(self) -> SinkStatistics:
        return SinkStatistics(bytes_written=self._written, bytes_played=0, bytes_dropped=0,
                              flushes=0, underruns=0, pending_ms=0.0)


class ScriptedLine(QueueTextInput):
    """The prompt, then the end of input; sent when the session takes turns (not over the assistant)."""

    interrupts = False

    def __init__(self, line: str) -> None:
        super().__init__(maxsize=2)
        self.put_nowait(line)
        self.put_nowait(None)


class InvocationCaller:
    """A CallerIO for one invocation: no audio in or out, one typed line, the transcript collected."""

    def __init__(self, agent: AgentConfig, prompt: str, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        audio = agent.audio
        self.source: AudioSource = NullSource(AudioFormat(audio.input_sample_rate), audio.chunk_ms)
        self.sink: AudioSink = DiscardSink(AudioFormat(audio.output_sample_rate))
        self.text_input: TextInput | None = ScriptedLine(prompt)
        self.vars: Mapping[str, str] = {}
        self.closed = asyncio.Event()
        self.close_reason = "caller hung up"
        self.entries: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=ENTRY_QUEUE)
        self.error: str | None = None
        self._replies: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._asked = False

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "error":
            self.error = str(fields.get("message", "the conversation failed"))

    def transcript_open(self, write: TranscriptWrite | None) -> None:
        pass

    def entry(self, entry: dict[str, Any]) -> None:
        kind = entry.get("type")
        if kind == "user":
            self._asked = True
        elif kind == "assistant" and self._asked:  # not a greeting spoken before the prompt
            self._replies.append(str(entry.get("text", "")))
        elif kind == "tool_call":
            self._calls.append({"name": entry.get("name"), "input": entry.get("input", {}),
                                "tool_use_id": entry.get("tool_use_id")})
        elif kind == "tool_result":
            for call in self._calls:
                if call.get("tool_use_id") == entry.get("tool_use_id") and "ok" not in call:
                    call["ok"] = "error" not in entry
                    break
        with contextlib.suppress(asyncio.QueueFull):  # a stream reader that fell far behind misses some
            self.entries.put_nowait(entry)

    def transcript_closing(self) -> None:
        pass

    def hang_up(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()

    def result(self) -> dict[str, Any]:
        calls = [{k: v for k, v in call.items() if k != "tool_use_id"} for call in self._calls]
        return {"reply": " ".join(t for t in self._replies if t), "tool_calls": calls,
                "conversation": self.conversation_id}


@register
class InvocationsFrontEnd:
    name = "invocations"

    def routes(self, ctx: ServeContext) -> list[BaseRoute]:
        async def endpoint(request: Request) -> Response:
            return await invoke(ctx, request)

        return [Route(PATH, endpoint, methods=["POST"])]


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def invoke(ctx: ServeContext, request: Request) -> Response:
    if not ctx.authorized(request):
        return _error(403, "a valid token is required")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"the request body is over {MAX_BODY_BYTES // 1024} KB")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _error(400, 'the body must be JSON, e.g. {"prompt": "Where is my order?"}')
    if not isinstance(data, dict):
        return _error(400, 'the body must be a JSON object, e.g. {"prompt": "Where is my order?"}')
    prompt = data.get("prompt", data.get("text"))
    if not isinstance(prompt, str) or not prompt.strip():
        return _error(400, '"prompt" (or "text") must be a non-empty string')
    if len(prompt) > MAX_PROMPT_CHARS:
        return _error(400, f'"prompt" is over {MAX_PROMPT_CHARS} characters')
    name = data.get("agent", request.query_params.get("agent"))
    if name is not None and not isinstance(name, str):
        return _error(400, '"agent" must be a string (an agent\'s name)')
    try:
        agent = ctx.agent_named(name)
        if not ctx.takes_text(agent):
            return _error(400, f"agent {agent.name!r} runs {agent.model.id}, which answers speech only: "
                          "/invocations sends typed text and needs a Nova 2 model")
        ctx.check_admission()
    except (UnknownAgent, CallerRefused) as exc:
        return _error(exc.http_status, exc.reason)
    from runner.serve.conversations import new_conversation_id

    caller = InvocationCaller(agent, prompt.strip(), new_conversation_id())
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_events(ctx, caller, agent), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})
    status, result = await _answer(ctx, caller, agent)
    return JSONResponse(result, status_code=status)


async def _answer(ctx: ServeContext, caller: InvocationCaller,
                  agent: AgentConfig) -> tuple[int, dict[str, Any]]:
    async with _running(ctx, caller, agent) as run:
        return await _outcome(ctx, caller, run)


async def _events(ctx: ServeContext, caller: InvocationCaller, agent: AgentConfig) -> AsyncIterator[str]:
    async with _running(ctx, caller, agent) as run:
        outcome = asyncio.ensure_future(_outcome(ctx, caller, run))
        entry: asyncio.Future[dict[str, Any]] | None = None
        try:
            while not outcome.done() or not caller.entries.empty():
                entry = asyncio.ensure_future(caller.entries.get())
                await asyncio.wait({entry, outcome}, return_when=asyncio.FIRST_COMPLETED)
                if entry.done():
                    yield _sse("entry", entry.result())
                else:
                    entry.cancel()
            status, result = outcome.result()
            yield _sse("result", {**result, "status": status})
        finally:  # also when the client went away mid-stream: nothing is left waiting
            if entry is not None:
                entry.cancel()
            outcome.cancel()


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@contextlib.asynccontextmanager
async def _running(ctx: ServeContext, caller: InvocationCaller,
                   agent: AgentConfig) -> AsyncIterator[asyncio.Task[None]]:
    """The conversation as a task; on leaving, it is ended in order (bounded) if still running."""
    from runner.serve.conversations import STOP_WAIT_S, run_caller

    run = asyncio.create_task(run_caller(ctx, caller, agent, conversation_id=caller.conversation_id,
                                         idle_exit_s=IDLE_AFTER_ANSWER_S), name="invocation")
    try:
        yield run
    finally:
        if not run.done():
            caller.hang_up("caller gone")
            await asyncio.wait({run}, timeout=STOP_WAIT_S + 1)
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run


async def _outcome(ctx: ServeContext, caller: InvocationCaller,
                   run: asyncio.Task[None]) -> tuple[int, dict[str, Any]]:
    """Wait (bounded) for the conversation to end; the HTTP status and the JSON result."""
    from runner.serve.conversations import STOP_WAIT_S

    timeout = ctx.settings.invocation_timeout_s
    done, _ = await asyncio.wait({run}, timeout=timeout)
    if not done:
        caller.hang_up(f"no answer within {timeout:g} s (--invocation-timeout)")
        await asyncio.wait({run}, timeout=STOP_WAIT_S + 1)
        return 504, {**caller.result(), "error": f"no answer within {timeout:g} s"}
    try:
        run.result()
    except CallerRefused as exc:  # the last slot went between the check and the start
        return exc.http_status, {"error": exc.reason}
    if caller.error is not None:
        return 502, {**caller.result(), "error": caller.error}
    return 200, caller.result()
