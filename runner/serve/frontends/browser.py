"""The browser front end: `/ws`, one WebSocket per caller (the page in runner/serve/static).

Protocol (documented in the README):
- client → server: binary frames of 16-bit LE mono PCM at the announced `input_rate`; text frames
  of JSON `{"type": "text", "text": "..."}` (a typed line), `{"type": "hello"}` (with
  `"marks": true`: the client echoes marks), or `{"type": "mark", "name": "..."}` (the echo of a
  server's mark: the audio before it has played).
- server → client: first `{"type": "ready", "input_rate", "output_rate", "agent", "text"}`; then
  binary frames of assistant PCM at `output_rate`, and JSON `transcript`, `tool_call`,
  `tool_result`, `interrupted` (stop playback now), `state`, `error`, and (to a client that said
  it echoes them) `mark` (`name`), placed among the audio frames: echo it once the audio before it
  has played (one dropped by `interrupted` needs no echo).
- `/ws?agent=NAME` talks to the agent named NAME (the file's `name:`) on a server of several; no
  `agent` means the first file's. An unknown name is accepted and closed at once with code 4404
  and a reason listing the agents served.
- A full or draining server accepts and closes at once with code 1013 and the reason; a missing or
  wrong token is refused before the handshake completes (HTTP 403).

The caller's audio is an AudioSource like any other: paced in real time, silence when the
browser sends nothing, bounded (the oldest audio is dropped past MAX_INPUT_MS). The assistant's
audio goes through a PacedSink, so it leaves at the pace it plays and a barge-in (flush) cuts it
within a block; the page is told `interrupted` to drop what it has buffered.

What the caller has heard is what the page says it played: the sink puts a mark after the first
block of each burst of speech, after its last, and every MARK_EVERY_MS between; the page echoes each
once its worklet has played the audio before it. The sink's `bytes_played` counts only what those
echoes confirm (runner.serve.playout), so a turn's "first sample played" is the page's, at most a
block (20 ms) after the answer's first sample left the worklet. A client that did not say it echoes
marks is sent none, and its turns have no such figure (`played_known` is False).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from runner.audio.base import AudioFormat, AudioSink, AudioSource, SinkStatistics, SourceStatistics
from runner.audio.pacing import PacedSource
from runner.audio.playback import PacedSink
from runner.conversation.text import QueueTextInput, TextInput
from runner.serve.errors import close_reason
from runner.serve.frontends.base import CallerRefused, TranscriptWrite, UnknownAgent, converse, register
from runner.serve.playout import PlayoutLedger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from runner.config.model import AgentConfig
    from runner.serve.context import ServeContext

log = logging.getLogger(__name__)

MAX_INPUT_MS = 2000  # caller audio waiting to be read; more means the caller runs ahead: drop oldest
OUTBOX = 512  # messages waiting to go to the caller; a caller that reads nothing is hung up on
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN = 1013
MARK_EVERY_MS = 500  # within a long answer, how often the page is asked to confirm what played
MAX_MARK_NAME = 32
_DONE = object()


class WebSocketSource(PacedSource):
    """The caller's audio as fed from the socket, read in real time (silence while none came)."""

    def __init__(self, fmt: AudioFormat, chunk_ms: int, max_ms: int = MAX_INPUT_MS) -> None:
        super().__init__(fmt, chunk_ms)
        self._buf = bytearray()
        self._max = fmt.bytes_for_ms(max_ms)
        self._dropped = 0

    def feed(self, pcm: bytes) -> None:
        if self._muted:  # a live source drops what it hears while muted
            return
        self._buf += pcm
        excess = len(self._buf) - self._max
        if excess > 0:
            excess += excess % self.fmt.frame_bytes
            del self._buf[:excess]
            self._dropped += max(1, excess // self.chunk_bytes)

    def mute(self, muted: bool) -> None:
        super().mute(muted)
        if muted:
            self._buf.clear()

    def _next_chunk(self) -> bytes:
        chunk = bytes(self._buf[: self.chunk_bytes])
        del self._buf[: self.chunk_bytes]
        return chunk + bytes(self.chunk_bytes - len(chunk))

    def statistics(self) -> SourceStatistics:
        stats = super().statistics()
        return SourceStatistics(stats.chunks_read, stats.bytes_read, stats.muted_chunks, self._dropped)


class WebSocketSink(PacedSink):
    """Assistant audio to the caller, one block at a time as it plays, with marks among it (see the
    module docstring); flush tells the caller."""

    def __init__(self, fmt: AudioFormat, send: Callable[[bytes], None], on_flush: Callable[[], None],
                 send_mark: Callable[[str], None] = lambda name: None,
                 mark_every_ms: int = MARK_EVERY_MS) -> None:
        super().__init__(fmt)
        self._send = send
        self._on_flush = on_flush
        self._send_mark = send_mark
        self._mark_every = fmt.bytes_for_ms(mark_every_ms)
        self.playout = PlayoutLedger()
        # Whether bytes_played is the caller's word: only once it said it echoes marks (the meter
        # reads this; until then it is sent no marks and its turns have no "first sample played").
        self.played_known = False
        self._since_mark = 0
        self._burst_start = True  # the next block begins a burst of speech
        self._marks = 0

    def echo_marks(self) -> None:
        """The caller echoes marks: send them from now on."""
        self.played_known = True

    def _play(self, block: bytes) -> None:
        self._send(block)
        self.playout.add(len(block))
        self._since_mark += len(block)
        # Nothing queued behind this block: the end of an answer (or a gap in it).
        last = self._queue is None or self._queue.queued_bytes == 0
        if self.played_known and (self._burst_start or last or self._since_mark >= self._mark_every):
            self._marks += 1
            name = f"b{self._marks}"
            self.playout.mark(name)
            self._send_mark(name)
            self._since_mark = 0
        self._burst_start = last

    def mark_reached(self, name: str) -> None:
        """The caller echoed mark `name`: what was sent before it has played."""
        self.playout.reached(name)

    def flush(self) -> int:
        dropped = super().flush()
        self.playout.cleared()
        self._burst_start = True
        self._on_flush()
        return dropped

    def statistics(self) -> SinkStatistics:
        return dataclasses.replace(super().statistics(), bytes_played=self.playout.played)


class BrowserCaller:
    """One connected browser: a CallerIO over its WebSocket."""

    def __init__(self, ctx: ServeContext, websocket: WebSocket, agent: AgentConfig) -> None:
        self._ws = websocket
        self._outbox: asyncio.Queue[object] = asyncio.Queue(maxsize=OUTBOX)
        self._audio_generation = 0
        self.closed = asyncio.Event()
        self.vars: Mapping[str, str] = {}
        self._source = WebSocketSource(AudioFormat(agent.audio.input_sample_rate), agent.audio.chunk_ms)
        self.source: AudioSource = self._source
        self._sink = WebSocketSink(AudioFormat(agent.audio.output_sample_rate), self._send_audio,
                                   self._interrupted, send_mark=lambda name: self.event("mark", name=name))
        self.sink: AudioSink = self._sink
        self._text = QueueTextInput() if ctx.takes_text(agent) else None
        self.text_input: TextInput | None = self._text

    def event(self, kind: str, **fields: Any) -> None:
        self._put({"type": kind, **fields})

    def transcript_open(self, write: TranscriptWrite | None) -> None:
        pass  # the page is told what it needs through event()

    def entry(self, entry: dict[str, Any]) -> None:
        pass

    def transcript_closing(self) -> None:
        pass

    def finish(self) -> None:
        """Nothing more will be sent: the sender ends once it has sent what is queued."""
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(_DONE)

    async def receive_loop(self) -> None:
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if (data := message.get("bytes")) is not None:
                    self._source.feed(data)
                elif (text := message.get("text")) is not None:
                    self._command(text)
        except (WebSocketDisconnect, RuntimeError):  # RuntimeError: receive after the close
            return
        finally:
            self.closed.set()

    async def send_loop(self) -> None:
        try:
            while (item := await self._outbox.get()) is not _DONE:
                if isinstance(item, tuple):  # (generation, pcm): skip audio a barge-in cut off
                    generation, pcm = item
                    if generation == self._audio_generation:
                        await self._ws.send_bytes(pcm)
                else:
                    await self._ws.send_text(json.dumps(item, ensure_ascii=False))
        except (WebSocketDisconnect, RuntimeError, OSError):  # the caller went away meanwhile
            self.closed.set()

    def _command(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self.event("error", message="text frames must be JSON")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "hello":
            if message.get("marks") is True:
                self._sink.echo_marks()
            return
        if kind == "mark" and isinstance(name := message.get("name"), str) and len(name) <= MAX_MARK_NAME:
            self._sink.mark_reached(name)
            return
        if kind == "text" and isinstance(line := message.get("text"), str):
            if self._text is None:
                self.event("error", message="this agent's model takes speech only (no typed input)")
            else:
                with contextlib.suppress(asyncio.QueueFull):
                    self._text.put_nowait(line)
            return
        self.event("error", message=f"unknown message type {kind!r}")

    def _send_audio(self, pcm: bytes) -> None:
        self._put((self._audio_generation, pcm))

    def _interrupted(self) -> None:
        self._audio_generation += 1
        self.event("interrupted")

    def _put(self, item: object) -> None:
        if self.closed.is_set():
            return
        try:
            self._outbox.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("a browser caller reads nothing: hanging up")
            self.closed.set()


@register
class BrowserFrontEnd:
    name = "browser"

    def routes(self, ctx: ServeContext) -> list[BaseRoute]:
        async def endpoint(websocket: WebSocket) -> None:
            await serve_browser(ctx, websocket)

        return [WebSocketRoute("/ws", endpoint)]


async def serve_browser(ctx: ServeContext, websocket: WebSocket) -> None:
    if not ctx.authorized(websocket):
        await websocket.close(code=1008, reason="a valid token is required")  # before accept: HTTP 403
        return
    await websocket.accept()
    try:
        agent = ctx.agent_named(websocket.query_params.get("agent"))
        ctx.check_admission()
    except (UnknownAgent, CallerRefused) as refused:
        await websocket.close(code=refused.websocket_code, reason=close_reason(refused.reason))
        return
    caller = BrowserCaller(ctx, websocket, agent)
    caller.event("ready", input_rate=agent.audio.input_sample_rate,
                 output_rate=agent.audio.output_sample_rate, agent=agent.name, text=ctx.takes_text(agent))
    code, reason = CLOSE_NORMAL, "conversation ended"
    async with asyncio.TaskGroup() as tg:
        receiver = tg.create_task(caller.receive_loop(), name="ws-receive")
        sender = tg.create_task(caller.send_loop(), name="ws-send")
        try:
            await converse(ctx, caller, agent)
        except CallerRefused as refused:
            code, reason = CLOSE_TRY_AGAIN, refused.reason
        if ctx.draining:
            code, reason = CLOSE_GOING_AWAY, "server is shutting down"
        caller.finish()
        await sender
        receiver.cancel()
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the caller left first
        await websocket.close(code=code, reason=reason)
