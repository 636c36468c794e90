"""Phone calls through Twilio: `POST /twilio/voice` answers with TwiML, `/twilio/stream` carries the call.

Twilio calls the voice webhook when a call comes in; the answer is
`<Response><Connect><Stream url="wss://HOST/twilio/stream">` with `<Parameter>`s (the webhook's
query parameters, the caller's and called numbers), and Twilio then opens the stream WebSocket and
speaks Media Streams on it (runner.serve.frontends.twilio_protocol) until the call ends.

Each call is one conversation: the caller's audio is the source, the assistant's audio the sink
(twilio_audio), keypad digits are typed text on Nova 2 (a few digits in a row become one line, sent
after `#` or a short pause), and the call's `callSid` and custom parameters are template vars.
What the caller heard of each answer (the protocol's mark accounting) goes into the transcript as
a `heard` entry.

Which agent: `POST /twilio/voice?agent=NAME` on a server of several (no `agent`: the first file's;
an unknown name: 404). The name rides to the stream as the `agent` custom parameter.

Hanging up: when Twilio ends the stream (`stop`, or its socket closes) the server closes with
1000; 1001 only when the server's drain ended the call.

The stream URL in the answer is built from the request's URL, which X-Forwarded-Proto /
X-Forwarded-Host rewrite only for a trusted proxy (runner.serve.forwarded, `--forwarded-allow-ips`);
the signature is checked against that same URL.

Who may call: with a Twilio auth token (`TWILIO_AUTH_TOKEN`, or the server's setting) every request
must carry a valid `X-Twilio-Signature` (refused with 403 otherwise). Without one, the server's own
token applies: put `?token=...` on the webhook URL in Twilio's console; the answer hands it to the
stream as a custom parameter (Twilio's stream URL may not carry a query), which is checked at
`start` and never becomes a var. Secrets are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from runner.audio.base import AudioFormat, AudioSink, AudioSource
from runner.conversation.control import PhoneCall
from runner.conversation.text import QueueTextInput, TextInput
from runner.serve.errors import close_reason
from runner.serve.frontends.base import CallerRefused, TranscriptWrite, UnknownAgent, converse, register
from runner.serve.frontends.twilio_audio import TwilioSink, TwilioSource
from runner.serve.frontends.twilio_protocol import (
    CallerAudio,
    Dtmf,
    Malformed,
    MarkReached,
    MediaStreamProtocol,
    Started,
    Stopped,
)
from runner.serve.frontends.twilio_signature import candidate_urls, signature_valid

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from runner.config.model import AgentConfig
    from runner.serve.context import ServeContext

log = logging.getLogger(__name__)

AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
VOICE_PATH = "/twilio/voice"
STREAM_PATH = "/twilio/stream"
SIGNATURE_HEADER = "x-twilio-signature"
TOKEN_PARAMETER = "token"
AGENT_PARAMETER = "agent"
MAX_WEBHOOK_BYTES = 64 * 1024
START_TIMEOUT_S = 10.0
# Digits pressed in a row become one line of text, sent on `#` or after this pause.
DTMF_PAUSE_S = 1.5
MAX_DTMF_DIGITS = 32
# Malformed frames: the first few are logged, then one in LOG_EVERY; past MAX the call ends.
LOG_FIRST_MALFORMED = 5
LOG_EVERY_MALFORMED = 100
MAX_MALFORMED = 1000
# After the conversation ended by itself: how long the mark after its last audio may take to come back.
LAST_MARK_WAIT_S = 5.0
# Webhook parameters passed on to the stream (and so to template vars), as Twilio names them.
FORWARDED_WEBHOOK_PARAMS = ("From", "To")


def twiml_connect(stream_url: str, parameters: Mapping[str, str]) -> str:
    """The TwiML answer that connects the call to `stream_url` (attribute values escaped)."""
    response = ET.Element("Response")
    stream = ET.SubElement(ET.SubElement(response, "Connect"), "Stream", url=stream_url)
    for name, value in parameters.items():
        ET.SubElement(stream, "Parameter", name=name, value=value)
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(response, encoding="unicode")


def dtmf_text(digits: str) -> str:
    """How keypad digits reach the model, as the caller's typed text."""
    return f"(keypad: {' '.join(digits)})"


class TwilioSettings:
    """The front end's own settings, read from the server's settings or the environment."""

    def __init__(self, ctx: ServeContext) -> None:
        self.auth_token = ctx.settings.twilio_auth_token or os.environ.get(AUTH_TOKEN_ENV) or None


@register
class TwilioFrontEnd:
    name = "twilio"

    def routes(self, ctx: ServeContext) -> list[BaseRoute]:
        settings = TwilioSettings(ctx)

        async def voice(request: Request) -> Response:
            return await answer_call(ctx, settings, request)

        async def stream(websocket: WebSocket) -> None:
            await serve_stream(ctx, settings, websocket)

        return [Route(VOICE_PATH, voice, methods=["POST"]), WebSocketRoute(STREAM_PATH, stream)]


async def answer_call(ctx: ServeContext, settings: TwilioSettings, request: Request) -> Response:
    body = await _bounded_body(request)
    if body is None:
        return PlainTextResponse("request too large", status_code=413)
    params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if settings.auth_token is not None:
        if not signature_valid(settings.auth_token, request.headers.get(SIGNATURE_HEADER),
                               candidate_urls(str(request.url)), params):
            log.warning("refused %s from %s: bad or missing X-Twilio-Signature", VOICE_PATH, _peer(request))
            return PlainTextResponse("forbidden", status_code=403)
    elif not ctx.authorized(request):
        log.warning("refused %s from %s: no valid token", VOICE_PATH, _peer(request))
        return PlainTextResponse("forbidden", status_code=403)
    try:
        ctx.agent_named(request.query_params.get(AGENT_PARAMETER))
        ctx.check_admission()
    except (UnknownAgent, CallerRefused) as exc:
        return PlainTextResponse(exc.reason, status_code=exc.http_status)
    form = dict(params)
    parameters = {k: v for k, v in request.query_params.items() if k != TOKEN_PARAMETER}
    parameters.update({k: form[k] for k in FORWARDED_WEBHOOK_PARAMS if k in form})
    token = ctx.settings.token
    if settings.auth_token is None and token is not None:
        parameters[TOKEN_PARAMETER] = token  # back to Twilio only: the stream presents it at start
    # The URL as the caller (Twilio) used it: a trusted proxy's X-Forwarded-* already applied.
    scheme = "wss" if request.url.scheme == "https" else "ws"
    stream_url = f"{scheme}://{request.url.netloc}{STREAM_PATH}"
    return Response(twiml_connect(stream_url, parameters), media_type="text/xml")


async def _bounded_body(request: Request) -> bytes | None:
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_WEBHOOK_BYTES:
            return None
    return bytes(body)


def _peer(conn: Request | WebSocket) -> str:
    return conn.client.host if conn.client is not None else "unknown"


class TwilioCall:
    """One call: the CallerIO the conversation gets, and the MediaLink its sink sends through."""

    def __init__(self, ctx: ServeContext, protocol: MediaStreamProtocol, started: Started,
                 agent: AgentConfig) -> None:
        self._ctx = ctx
        self.protocol = protocol
        self.caller_audio = TwilioSource(AudioFormat(agent.audio.input_sample_rate), agent.audio.chunk_ms)
        self.source: AudioSource = self.caller_audio
        self.twilio_sink = TwilioSink(AudioFormat(agent.audio.output_sample_rate), self)
        self.sink: AudioSink = self.twilio_sink
        self.dtmf: QueueTextInput | None = QueueTextInput() if ctx.takes_text(agent) else None
        self.text_input: TextInput | None = self.dtmf
        params = {k: v for k, v in started.custom_parameters.items()
                  if k not in (TOKEN_PARAMETER, AGENT_PARAMETER)}
        self.vars: Mapping[str, str] = {**params, "callSid": started.call_sid,
                                        "streamSid": started.stream_sid}
        self.phone = PhoneCall("twilio", started.call_sid, started.account_sid)  # for builtin:transfer
        self.closed = asyncio.Event()
        self.wake = asyncio.Event()  # frames are waiting in the protocol for the writer
        self.ending = False  # the writer sends what is left, then returns
        self.hung_up = False  # Twilio ended the stream (stop, or its socket closed)
        self._write_transcript: TranscriptWrite | None = None
        self._digits = ""
        self._digit_timer: asyncio.TimerHandle | None = None

    # CallerIO
    def event(self, kind: str, **fields: Any) -> None:
        if kind == "error":
            log.warning("call %s: %s", self.protocol.call_sid, fields.get("message", ""))

    def transcript_open(self, write: TranscriptWrite | None) -> None:
        # None: the conversation has ended (its end record is written): nothing more goes in. An
        # answer still playing when the server's drain ended the call got its entry in
        # `transcript_closing`; one playing when the caller hung up got its entry in `_read`, before
        # the conversation was told to end.
        self._write_transcript = write

    def entry(self, entry: dict[str, Any]) -> None:
        pass

    def transcript_closing(self) -> None:
        # The server's drain ends the call while an answer may still play: what its marks
        # confirmed was heard, the rest counts as neither (as when the caller hangs up). A call the
        # agent ends is hung up only once its last mark came back (`_heard_to_the_end`).
        if self._ctx.draining and not self.hung_up:
            self.protocol.finish()
            self.record_playouts()

    def record_playouts(self) -> None:
        """What the caller heard of each answer whose playout is now known, as `heard` entries."""
        write = self._write_transcript
        for p in self.protocol.playouts():
            if write is not None:
                write("heard", sent_ms=round(p.sent_ms), played_ms=round(p.heard_ms), cut_ms=round(p.cut_ms),
                      how=p.how)

    # MediaLink
    def send_audio(self, pcm8k: bytes, *, mark: bool) -> tuple[int, str | None]:
        sent = self.protocol.send_audio(pcm8k, mark=mark)
        if sent or mark:
            self.wake.set()
        return sent, self.protocol.mark_after_audio() if mark else None

    def send_mark(self) -> str | None:
        if not self.protocol.can_send:
            return None
        name = self.protocol.send_mark()
        self.wake.set()
        return name

    def clear(self) -> None:
        self.protocol.clear()
        self.record_playouts()
        self.wake.set()

    # keypad
    def digit(self, digit: str) -> None:
        if self.dtmf is None:
            log.info("call %s: keypad digit ignored (text input needs Nova 2)", self.protocol.call_sid)
            return
        self._digits = (self._digits + digit)[-MAX_DTMF_DIGITS:]
        if self._digit_timer is not None:
            self._digit_timer.cancel()
        if digit == "#":
            self.send_digits()
        else:
            self._digit_timer = asyncio.get_running_loop().call_later(DTMF_PAUSE_S, self.send_digits)

    def send_digits(self) -> None:
        digits, self._digits = self._digits, ""
        if self._digit_timer is not None:
            self._digit_timer.cancel()
            self._digit_timer = None
        if digits and self.dtmf is not None:
            try:
                self.dtmf.put_nowait(dtmf_text(digits))
            except asyncio.QueueFull:
                log.warning("call %s: keypad input dropped (the conversation is not taking text)",
                            self.protocol.call_sid)


async def serve_stream(ctx: ServeContext, settings: TwilioSettings, websocket: WebSocket) -> None:
    if settings.auth_token is not None:
        if not signature_valid(settings.auth_token, websocket.headers.get(SIGNATURE_HEADER),
                               candidate_urls(str(websocket.url))):
            log.warning("refused %s from %s: bad or missing X-Twilio-Signature", STREAM_PATH,
                        _peer(websocket))
            await websocket.close(code=1008)  # before accept: the upgrade is refused with 403
            return
        token_checked = True
    else:
        token_checked = ctx.authorized(websocket)
    await websocket.accept()
    protocol = MediaStreamProtocol()
    started = await _wait_start(websocket, protocol)
    if started is None:
        await _close(websocket, 1008, "no start")
        return
    if not token_checked and not _token_matches(ctx, started):
        log.warning("refused %s from %s: no valid token", STREAM_PATH, _peer(websocket))
        await _close(websocket, 1008, "forbidden")
        return
    try:
        agent = ctx.agent_named(started.custom_parameters.get(AGENT_PARAMETER))
        ctx.check_admission()
    except (UnknownAgent, CallerRefused) as exc:
        log.warning("refused call %s: %s", started.call_sid, exc.reason)
        await _close(websocket, exc.websocket_code, exc.reason)
        return
    call = TwilioCall(ctx, protocol, started, agent)
    log.info("call %s: stream %s started", started.call_sid, started.stream_sid)
    try:
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(_read(websocket, call), name="twilio-reader")
            writer = tg.create_task(_write(websocket, call), name="twilio-writer")
            try:
                await converse(ctx, call, agent)
                if not ctx.draining:  # a drain has its own deadline
                    await _heard_to_the_end(call)
            except CallerRefused as exc:
                await _close(websocket, CallerRefused.websocket_code, exc.reason)
            finally:
                reader.cancel()
                call.ending = True
                call.wake.set()
                await asyncio.wait({writer}, timeout=2.0)  # the last frames go out
                writer.cancel()
    finally:
        call.send_digits()
        stats = protocol.stats
        ctx.metrics.phone_call(sent_s=stats.sent_ms / 1000, heard_s=stats.heard_ms / 1000,
                               cut_s=stats.cut_ms / 1000, barge_ins=stats.clears)
        log.info("call %s ended: %.1f s of assistant audio sent, %.1f s heard, %.1f s cut by %d barge-ins, "
                 "%d keypad digits", protocol.call_sid, stats.sent_ms / 1000, stats.heard_ms / 1000,
                 stats.cut_ms / 1000, stats.clears, stats.dtmf_digits)
        if ctx.draining and not call.hung_up:  # the drain ended the call, not the caller
            await _close(websocket, 1001, "server shutting down")
        else:
            await _close(websocket, 1000, "call ended")


async def _wait_start(websocket: WebSocket, protocol: MediaStreamProtocol) -> Started | None:
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                text = await _receive(websocket, protocol)
                if text is None:
                    return None
                for event in protocol.receive_text(text):
                    if isinstance(event, Started):
                        return event
                    if isinstance(event, Stopped):
                        return None
                    if isinstance(event, Malformed):
                        log.warning("stream before start: ignored a frame (%s)", event.reason)
    except TimeoutError:
        log.warning("stream from %s sent no start within %.0f s", _peer(websocket), START_TIMEOUT_S)
        return None


async def _receive(websocket: WebSocket, protocol: MediaStreamProtocol) -> str | None:
    """The next text frame (binary frames are reported and skipped); None once the socket closed."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("text") is not None:
            return str(message["text"])
        for event in protocol.receive_binary(message.get("bytes") or b""):
            log.warning("stream: %s", getattr(event, "reason", event))


def _token_matches(ctx: ServeContext, started: Started) -> bool:
    expected = ctx.settings.token
    given = started.custom_parameters.get(TOKEN_PARAMETER)
    return expected is None or (given is not None and hmac.compare_digest(given.encode(), expected.encode()))


async def _read(websocket: WebSocket, call: TwilioCall) -> None:
    """Twilio's frames into the call until the caller hangs up (stop) or the socket closes."""
    protocol = call.protocol
    try:
        while True:
            text = await _receive(websocket, protocol)
            if text is None:
                call.hung_up = True
                return
            for event in protocol.receive_text(text):
                if isinstance(event, CallerAudio):
                    call.caller_audio.feed(event.pcm)
                elif isinstance(event, Dtmf):
                    call.digit(event.digit)
                elif isinstance(event, MarkReached):
                    if event.heard:
                        call.twilio_sink.mark_reached(event.name)
                    call.record_playouts()
                elif isinstance(event, Stopped):
                    log.info("call %s: Twilio stopped the stream (hung up)", protocol.call_sid)
                    call.hung_up = True
                    return
                elif isinstance(event, Malformed):
                    n = protocol.stats.malformed
                    if n <= LOG_FIRST_MALFORMED or n % LOG_EVERY_MALFORMED == 0:
                        log.warning("call %s: ignored a frame (%s; %d so far)", protocol.call_sid,
                                    event.reason, n)
                    if n >= MAX_MALFORMED:
                        log.warning("call %s: ending the call after %d bad frames", protocol.call_sid, n)
                        return
    finally:
        if call.hung_up:  # what played of an answer still playing, before the conversation ends
            protocol.finish()
            call.record_playouts()
        call.closed.set()


async def _write(websocket: WebSocket, call: TwilioCall) -> None:
    """The protocol's outgoing frames to the socket, in order, from this one task."""
    while not call.ending:
        await call.wake.wait()
        call.wake.clear()
        for text in call.protocol.data_to_send():
            if websocket.application_state is not WebSocketState.CONNECTED:
                return
            try:
                await websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                call.closed.set()
                return


async def _heard_to_the_end(call: TwilioCall) -> None:
    """The conversation ended on its own (end_call, inactivity, a time limit): hang up once Twilio
    has echoed the mark after the last audio, i.e. the caller heard the goodbye (bounded)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LAST_MARK_WAIT_S):
            # Polled: the sans-IO protocol has no event for "every mark came back".
            while call.protocol.unconfirmed_ms() > 0 and not call.closed.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.02)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.close(code=code, reason=close_reason(reason))
