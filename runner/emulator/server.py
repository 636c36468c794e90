"""The emulator's wire layer: TLS + HTTP/2 (h2) + SigV4 + event-stream, on asyncio.

It serves `POST /model/{modelId}/invoke-with-bidirectional-stream` the way Bedrock does and hands
each accepted stream to a `StreamHandler` (the model behaviour) as an `EmulatorStream`.

Failure policy (what the client sees):
* unknown path or method → HTTP 404 `UnknownOperationException`;
* missing/bad request signature → HTTP 403 with AWS's `x-amzn-errortype` and message;
* `handler.admit` returns a Rejection → that HTTP status / error type / message;
* after the 200, a bad chunk signature or undecodable input frame → an unmodeled event-stream
  error (`:message-type error`, `:error-code InvalidSignatureException` / `SerializationException`)
  and END_STREAM; the SDK raises `UnmodeledEventError` from `receive()`. Bedrock cannot answer
  with an HTTP status at that point either; an error event is the only in-band channel it has.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from runner.emulator.api import EXCEPTION_KINDS, INLINE_TAKEN, TIMED_OUT, StreamHandler, StreamRequest
from runner.emulator.certs import load_identity, server_context
from runner.emulator.eventlog import summarize_event
from runner.emulator.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    decode_message,
    encode_headers,
    encode_message,
    frame,
)
from runner.emulator.sigv4 import ChunkVerifier, Credentials, SignatureError, verify_request
from runner.errors import RunnerError

logger = logging.getLogger("runner.emulator")

_ROUTE: Final = re.compile(r"/model/(?P<model>[^/]+)/invoke-with-bidirectional-stream")

# Bounds on every wait the wire layer does on the client's behalf.
WRITE_TIMEOUT: Final = 30.0  # a client that stops reading (window or socket buffer stays full)
HANDLER_GRACE: Final = 2.0  # a handler still running this long after its stream ended is cancelled
CLOSE_TIMEOUT: Final = 3.0  # closing the emulator
# Stop acknowledging input (closing the client's window) while this many events wait unread.
_QUEUE_SOFT_LIMIT: Final = 256
_STREAM_WINDOW: Final = 1 << 20
_DEFAULT_WINDOW: Final = 65535  # HTTP/2's initial window, which the emulator's SETTINGS keep
# Each stream's window grows from HTTP/2's default to _STREAM_WINDOW by a WINDOW_UPDATE when the
# stream opens, not by SETTINGS_INITIAL_WINDOW_SIZE: aws-c-http (awscrt 0.32.2) never resumes a
# stream whose window ran out before SETTINGS raised it (a client that writes 64 KB at once before
# the emulator's SETTINGS arrive), but does resume one on a WINDOW_UPDATE. (Tests set this True to
# be a server that uses SETTINGS, as a real one may.)
_WINDOW_BY_SETTINGS = False
# DATA queued in h2 beyond this goes to the transport at once rather than at the end of the
# loop iteration (the transport's own high-water mark is 64 KiB too).
_FLUSH_NOW_BYTES: Final = 64 * 1024
_CONNECTION_WINDOW: Final = 1 << 24
_MAX_STREAMS: Final = 1000  # SETTINGS_MAX_CONCURRENT_STREAMS
# Input data is handed back to h2's flow control (which sends WINDOW_UPDATE only once half a
# window is consumed) in batches of this much per stream, not per event. Every stream holding a
# batch at most can never close the connection window: h2 keeps < half of it, and
# _MAX_STREAMS * _ACK_BATCH is below the other half.
_ACK_BATCH: Final = 8 * 1024
assert _MAX_STREAMS * _ACK_BATCH < _CONNECTION_WINDOW // 2 and _ACK_BATCH < _STREAM_WINDOW // 2


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    connections_total: int
    connections_open: int
    streams_total: int
    streams_open: int
    rejected: int
    events_in: int
    events_out: int
    bytes_in: int
    bytes_out: int
    chunk_signatures_verified: int
    events_inline: int = 0  # input events handed to a waiting handler's inline consumer (set_inline)


@dataclass(slots=True)
class _Counters:
    connections_total: int = 0
    connections_open: int = 0
    streams_total: int = 0
    streams_open: int = 0
    rejected: int = 0
    events_in: int = 0
    events_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    chunk_signatures_verified: int = 0
    events_inline: int = 0


_TCP_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)  # Linux only


# h2 (4.4) logs each frame it receives, building the message first whatever its logger:
# `logger.trace("Received frame: %s", repr(frame))` in H2Connection._receive_frame. hyperframe's
# repr of a DATA frame hex-dumps the whole body to show its first 20 hex digits: ~6 µs of an
# input event's ~10 µs repr warm, and on the cold cache a real-time event finds, ~40 µs, about a
# tenth of the emulator's CPU per event. This replacement gives the same text for any data
# (tests/emulator/test_frame_repr.py) and hex-dumps only the bytes it shows.
_HEX_SHOWN: Final = 20
_hyperframe_raw_data_repr = hyperframe.frame._raw_data_repr


def _raw_data_repr(data: bytes | None) -> str:
    if not data or len(data) * 2 <= _HEX_SHOWN:
        return _hyperframe_raw_data_repr(data)
    return "<hex:" + binascii.hexlify(data[: _HEX_SHOWN // 2 + 1]).decode("ascii")[:_HEX_SHOWN] + "...>"


hyperframe.frame._raw_data_repr = _raw_data_repr


# --- event summaries for the debug log (NovaHandler logs validated events at INFO) -----------


def _summarize_payload(payload: bytes) -> str:
    try:
        return summarize_event(json.loads(payload))
    except (ValueError, RecursionError):
        return f"non-JSON payload ({len(payload)} B)"


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


# --- framing helpers ----------------------------------------------------------------------------


def _unwrap_chunk(inner: bytes) -> bytes:
    """Inner event-stream message → the Nova JSON bytes. Raises ValueError on any shape problem."""
    message = decode_message(inner)
    if message.headers.get(":message-type") != "event" or message.headers.get(":event-type") != "chunk":
        raise ValueError(f"unexpected input event headers {sorted(message.headers)}")
    payload = message.payload
    if payload.startswith(_BYTES_OPEN) and payload.endswith(b'"}'):
        # What the SDK sends: {"bytes":"<base64>"}. When the slice between the quotes is valid
        # base64 it holds no quote, backslash or control character, so json.loads would read the
        # same string; anything else takes the general path, which words the error.
        with contextlib.suppress(binascii.Error):
            return base64.b64decode(payload[len(_BYTES_OPEN):-2], validate=True)
    try:
        body = json.loads(payload)
    except RecursionError:  # json.loads raises it, not a ValueError, for deep nesting
        raise ValueError("input chunk payload is nested too deeply") from None
    if not isinstance(body, dict) or not isinstance(body.get("bytes"), str):
        raise ValueError('input chunk payload is not {"bytes": <base64>}')
    try:
        return base64.b64decode(body["bytes"], validate=True)
    except binascii.Error as exc:
        raise ValueError("input chunk bytes are not base64") from exc


_BYTES_OPEN: Final = b'{"bytes":"'
_CHUNK_HEADERS: Final = encode_headers(
    {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"})


def _chunk_message(event: Mapping[str, Any]) -> bytes:
    # json.dumps({"bytes": b64}) without the second JSON pass over the base64 (it needs no escaping).
    payload = b'{"bytes": "' + base64.b64encode(json.dumps(event).encode()) + b'"}'
    return frame(_CHUNK_HEADERS, payload)


def _exception_message(kind: str, message: str) -> bytes:
    headers = {":message-type": "exception", ":exception-type": kind, ":content-type": "application/json"}
    return encode_message(dict(headers), json.dumps({"message": message}).encode())


def _error_message(code: str, message: str) -> bytes:
    headers = {":message-type": "error", ":error-code": code, ":error-message": message}
    return encode_message(dict(headers))


# --- one HTTP/2 stream --------------------------------------------------------------------------


class _Stream:
    """EmulatorStream over one HTTP/2 stream."""

    def __init__(self, conn: _Connection, stream_id: int, request: StreamRequest, verifier: ChunkVerifier):
        self.request = request
        self._conn = conn
        self._id = stream_id
        self._verifier = verifier
        self._decoder = EventStreamDecoder()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._unacked = 0
        self._input_done = False
        self._local_closed = False
        self._remote_closed = False
        self._dead = False
        self._failing = False
        self._write_lock = asyncio.Lock()
        self._window = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._label = f"{request.request_id[:8]}"
        self._inline: Callable[[bytes], bool] | None = None
        self._parked = False  # receive() waits on an empty queue
        self._woken: asyncio.Future[None] | None = None  # receive_within()'s wait

    # EmulatorStream -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._local_closed or self._dead

    def set_inline(self, consumer: Callable[[bytes], bool] | None) -> None:
        """Hand each input event to `consumer` as it is read, instead of waking the handler, while
        the handler waits in receive() with nothing queued (a real-time client's events arrive one
        at a time: this saves a task switch and a loop iteration per event). The consumer returns
        True when the handler must run; receive() then returns INLINE_TAKEN. Events that arrive
        while the handler is busy queue as before, so their order is kept."""
        self._inline = consumer

    async def receive(self) -> bytes | None:
        self._parked = self._queue.empty()
        try:
            payload = await self._queue.get()
        finally:
            self._parked = False
        return self._took(payload)

    async def receive_within(self, seconds: float) -> bytes | None:
        """receive(), or TIMED_OUT once `seconds` pass with nothing to take. A timer ends the
        wait, not a cancellation of the waiting task as with asyncio.timeout (NovaHandler waits
        like this between the ~10 paced output chunks a second of each answer)."""
        if self._queue.empty():
            loop = asyncio.get_running_loop()
            woken = self._woken = loop.create_future()
            timer = loop.call_later(seconds, _wake, woken)
            self._parked = True
            try:
                await woken
            finally:
                self._parked = False
                self._woken = None
                timer.cancel()
            if self._queue.empty():
                return TIMED_OUT
        return self._took(self._queue.get_nowait())

    def _took(self, payload: bytes | None) -> bytes | None:
        if payload is None:
            self._queue.put_nowait(None)  # every later receive() also sees the end
            return None
        if self._unacked >= _ACK_BATCH:
            self._ack_if_room()
        return payload

    def _put(self, item: bytes | None) -> None:
        self._queue.put_nowait(item)
        _wake(self._woken)

    async def send_event(self, event: Mapping[str, Any]) -> None:
        data = _chunk_message(event)
        if await self._write(data):
            self._conn.counters.events_out += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s out %s", self._label, summarize_event(event))

    async def send_exception(self, kind: str, message: str) -> None:
        if kind not in EXCEPTION_KINDS:
            raise ValueError(f"unknown exception kind {kind!r}; expected one of {EXCEPTION_KINDS}")
        logger.info("%s out exception %s: %s", self._label, kind, message)
        await self._write(_exception_message(kind, message), end=True)

    async def send_error(self, code: str, message: str) -> None:
        """An unmodeled event-stream error, then END_STREAM (SDK: UnmodeledEventError)."""
        logger.info("%s out error %s: %s", self._label, code, message)
        await self._write(_error_message(code, message), end=True)

    async def send_raw(self, data: bytes) -> None:
        logger.info("%s out raw %d B", self._label, len(data))
        await self._write(data)

    async def reset(self) -> None:
        if self.closed:
            return
        logger.info("%s out RST_STREAM", self._label)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.h2.reset_stream(self._id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self._conn.flush()
        self._mark_dead()

    async def end(self) -> None:
        if self.closed or self._failing:
            return
        if self._write_lock.locked():
            # Another writer is mid-message; ending now would truncate it, so abort instead.
            await self.reset()
            return
        self._end_now()

    # wire side --------------------------------------------------------------------------------

    def _end_now(self) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.h2.end_stream(self._id)
            self._conn.flush()
        self._set_local_closed()

    async def _write(self, data: bytes, *, end: bool = False) -> bool:
        """Send `data` within the client's flow-control window; False if the stream is gone."""
        async with self._write_lock:
            offset = 0
            h2conn = self._conn.h2
            while offset < len(data):
                if self.closed:
                    return False
                try:
                    window = h2conn.local_flow_control_window(self._id)
                except h2.exceptions.ProtocolError:
                    self._mark_dead()
                    return False
                size = min(window, h2conn.max_outbound_frame_size, len(data) - offset)
                if size <= 0:
                    self._window.clear()
                    if not await self._bounded_wait(self._window.wait()):
                        return False
                    continue
                try:
                    h2conn.send_data(self._id, data[offset : offset + size])
                except h2.exceptions.ProtocolError:
                    # The client went away (GOAWAY, RST_STREAM, connection closed) since the
                    # check above: nothing can be sent any more, and that ends the handler.
                    self._gone()
                    return False
                offset += size
                self._conn.flush_soon(size)
                # Most writes fit the transport's buffer: no wait (and no timeout set up) then.
                if not self._conn.is_writable and not await self._bounded_wait(self._conn.writable()):
                    return False
                if self.closed:
                    return False
            self._conn.counters.bytes_out += len(data)
            if end:
                self._end_now()
            return True

    async def _bounded_wait(self, waiter: Any) -> bool:
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await waiter
        except TimeoutError:
            logger.warning("%s client stopped reading for %.0f s; resetting", self._label, WRITE_TIMEOUT)
            await self.reset()
            return False
        return not self.closed

    def on_window(self) -> None:
        self._window.set()

    def on_data(self, data: bytes, flow_length: int) -> None:
        self._conn.counters.bytes_in += len(data)
        self._unacked += flow_length
        if not self._input_done:
            self._feed(data)
        if self._unacked >= _ACK_BATCH or self._input_done:
            # No flush here: the connection flushes once it has handled everything it read.
            self._ack_if_room(flush=False)

    def _feed(self, data: bytes) -> None:
        try:
            outer_messages = self._decoder.feed(data)
        except EventStreamError as exc:
            self._fail_input("SerializationException", f"Malformed event stream: {exc}")
            return
        for outer in outer_messages:
            try:
                inner = self._verifier.verify(outer)
            except SignatureError as exc:
                self._fail_input(exc.error_type, exc.message)
                return
            self._conn.counters.chunk_signatures_verified += 1
            if not inner:
                logger.info("%s in  end of input (signed empty frame)", self._label)
                self._finish_input()
                return
            try:
                payload = _unwrap_chunk(inner)
            except (ValueError, EventStreamError) as exc:
                self._fail_input("SerializationException", f"Malformed input event: {exc}")
                return
            self._conn.counters.events_in += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s in  %s", self._label, _summarize_payload(payload))
            if self._parked and self._inline is not None and self._queue.empty():
                self._conn.counters.events_inline += 1
                if self._inline(payload):
                    self._put(INLINE_TAKEN)
            else:
                self._put(payload)

    def _fail_input(self, code: str, message: str) -> None:
        logger.warning("%s input rejected: %s: %s", self._label, code, message)
        # The error must reach the client before the handler (which now sees end of input) can
        # end the stream cleanly; end() leaves the stream to this writer.
        self._failing = True
        self._finish_input()
        self._conn.emulator.spawn(self.send_error(code, message))

    def _finish_input(self) -> None:
        if not self._input_done:
            self._input_done = True
            self._put(None)
            # What the last events held goes back to the connection's window, which the
            # connection's other and later streams share.
            self._ack_if_room()

    def _ack_if_room(self, *, flush: bool = True) -> None:
        if self._unacked and (self._input_done or self._queue.qsize() < _QUEUE_SOFT_LIMIT):
            unacked, self._unacked = self._unacked, 0
            try:
                self._conn.h2.acknowledge_received_data(unacked, self._id)
            except h2.exceptions.ProtocolError:
                self._gone()
                return
            if flush:
                self._conn.flush()

    def _gone(self) -> None:
        if not self._dead:
            logger.info("%s client gone; stream closed", self._label)
        self._mark_dead()

    def on_remote_end(self) -> None:
        if not self._input_done:
            logger.info("%s in  END_STREAM", self._label)
        self._remote_closed = True
        self._finish_input()
        self._maybe_forget()

    def _set_local_closed(self) -> None:
        if self._local_closed:
            return
        self._local_closed = True
        self._finish_input()
        self._maybe_forget()
        if self.task is not None and not self.task.done():
            self._grace_timer = asyncio.get_running_loop().call_later(HANDLER_GRACE, self._cancel_task)

    def _mark_dead(self) -> None:
        if self._dead:
            return
        self._dead = True
        self._window.set()
        self._finish_input()
        self._conn.forget(self._id)
        self._cancel_task()

    def _cancel_task(self) -> None:
        if self.task is not None and not self.task.done():
            logger.info("%s stream gone; cancelling its handler", self._label)
            self.task.cancel()

    def _maybe_forget(self) -> None:
        if self._local_closed and self._remote_closed:
            self._conn.forget(self._id)

    def on_handler_done(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()


# --- one connection -----------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.counters = emulator.counters
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        self.streams: dict[int, _Stream] = {}
        self.transport: asyncio.Transport | None = None
        self._sock: Any = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.lost = asyncio.Event()
        self._flush_scheduled = False
        self._unflushed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.counters.connections_total += 1
        self.counters.connections_open += 1
        self.emulator.connections.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            logger.warning("connection without ALPN h2; closing")
            transport.close()
            return
        self._sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack()
        settings = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _MAX_STREAMS}
        if _WINDOW_BY_SETTINGS:
            settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = _STREAM_WINDOW
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self.flush()
        logger.info("TLS connection from %s, ALPN h2", transport.get_extra_info("peername"))

    def _quickack(self) -> None:
        # awscrt never sets TCP_NODELAY; without QUICKACK its small writes wait ~40 ms for our
        # delayed ACK. The kernel clears QUICKACK, so it is re-armed on every read.
        if self._sock is not None and _TCP_QUICKACK is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.counters.connections_open -= 1
        self.emulator.connections.discard(self)
        for stream in list(self.streams.values()):
            stream._mark_dead()
        self._writable.set()
        self.lost.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def writable(self) -> None:
        await self._writable.wait()

    @property
    def is_writable(self) -> bool:
        return self._writable.is_set()

    def flush(self) -> None:
        """Hand what h2 has queued to the transport now."""
        self._flush_scheduled = False
        self._unflushed = 0
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def flush_soon(self, queued: int) -> None:
        """Flush at the end of this loop iteration, so that the output events every stream sends
        meanwhile go out in one TLS write (one send) instead of one each; at once when `queued`
        (bytes of DATA just queued) brings the backlog to _FLUSH_NOW_BYTES, so a burst still meets
        the transport's back-pressure. Only event data waits: control frames (SETTINGS, their
        ACK, WINDOW_UPDATE, HEADERS) keep flush()'s timing, which awscrt's flow control relies on."""
        self._unflushed += queued
        if self._unflushed >= _FLUSH_NOW_BYTES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        if self._flush_scheduled:
            self.flush()

    def forget(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self.counters.streams_open -= 1

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection()
        self.flush()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._quickack()
        try:
            events = self.h2.receive_data(data)
        except (h2.exceptions.ProtocolError, UnicodeDecodeError) as exc:
            # h2 decodes header names and values as UTF-8 itself and raises UnicodeDecodeError
            # (not a ProtocolError, so it queues no GOAWAY) for bytes that are not.
            logger.warning("HTTP/2 protocol error from client: %s", exc)
            if isinstance(exc, UnicodeDecodeError):
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self._dispatch(event)
        self.flush()

    def _dispatch(self, event: h2.events.Event) -> None:
        match event:
            case h2.events.RequestReceived(stream_id=sid, headers=headers, stream_ended=ended):
                if ended is None and not _WINDOW_BY_SETTINGS:
                    self.h2.increment_flow_control_window(_STREAM_WINDOW - _DEFAULT_WINDOW, stream_id=sid)
                self._on_request(sid, headers)
                if ended is not None and sid in self.streams:
                    self.streams[sid].on_remote_end()
            case h2.events.DataReceived(stream_id=sid, data=data, flow_controlled_length=length):
                stream = self.streams.get(sid)
                if stream is not None:
                    stream.on_data(data, length)
                else:  # a refused or finished stream: keep the connection window open
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self.h2.acknowledge_received_data(length, sid)
            case h2.events.StreamEnded(stream_id=sid):
                if sid in self.streams:
                    self.streams[sid].on_remote_end()
            case h2.events.StreamReset(stream_id=sid):
                if sid in self.streams:
                    logger.info("%s in  RST_STREAM", self.streams[sid]._label)
                    self.streams[sid]._mark_dead()
            case h2.events.WindowUpdated(stream_id=sid):
                targets = self.streams.values() if sid == 0 else filter(None, [self.streams.get(sid)])
                for stream in list(targets):
                    stream.on_window()
            case h2.events.RemoteSettingsChanged():
                for stream in list(self.streams.values()):
                    stream.on_window()
            case h2.events.ConnectionTerminated():
                # After GOAWAY h2 refuses every send on this connection: its streams are over.
                for stream in list(self.streams.values()):
                    stream._gone()
                self.flush()
                if self.transport is not None:
                    self.transport.close()
            case _:
                pass

    def _on_request(self, stream_id: int, raw_headers: Any) -> None:
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            key = str(name).lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else str(value)
        headers["host"] = headers.get(":authority", headers.get("host", ""))
        request_id = str(uuid.uuid4())
        method, path = headers.get(":method", ""), headers.get(":path", "")
        route = _ROUTE.fullmatch(path.partition("?")[0])
        logger.info("request %s %s %s", request_id[:8], method, path)
        if self.emulator.closing:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        if route is None or method != "POST":
            self._send_http_error(stream_id, request_id, 404, "UnknownOperationException", "Not Found")
            return
        emulator = self.emulator
        try:
            verified = verify_request(
                method, path, headers, emulator.checked_credentials, region=emulator.region
            )
        except SignatureError as exc:
            self._send_http_error(stream_id, request_id, 403, exc.error_type, exc.message)
            return
        request = StreamRequest(
            model_id=unquote(route["model"]), request_id=request_id, sequence=emulator.next_sequence()
        )
        try:
            rejection = emulator.handler.admit(request)
        except Exception:
            logger.exception("handler.admit failed")
            self._send_http_error(stream_id, request_id, 500, "InternalServerException", "Internal error")
            return
        if rejection is not None:
            self._send_http_error(
                stream_id, request_id, rejection.status, rejection.error_type, rejection.message
            )
            return
        checked = emulator.checked_credentials
        secret = checked.secret_access_key if checked is not None else None
        verifier = ChunkVerifier(verified.signature, secret, region=emulator.region)
        stream = _Stream(self, stream_id, request, verifier)
        self.streams[stream_id] = stream
        self.counters.streams_total += 1
        self.counters.streams_open += 1
        self.h2.send_headers(
            stream_id,
            [
                (":status", "200"),
                ("content-type", "application/vnd.amazon.eventstream"),
                ("x-amzn-requestid", request_id),
            ],
        )
        logger.info("%s accepted: model %s", request_id[:8], request.model_id)
        stream.task = emulator.spawn(emulator.run_handler(stream))

    def _send_http_error(
        self, stream_id: int, request_id: str, status: int, error_type: str, message: str
    ) -> None:
        self.counters.rejected += 1
        logger.info("%s rejected: %d %s: %s", request_id[:8], status, error_type, message)
        body = json.dumps({"message": message}).encode()
        self.h2.send_headers(
            stream_id,
            [
                (":status", str(status)),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
                ("x-amzn-requestid", request_id),
                ("x-amzn-errortype", error_type),
            ],
        )
        self.h2.send_data(stream_id, body, end_stream=True)


class ListenError(RunnerError):
    """The emulator cannot listen on the address it was given (in use, not local, not allowed)."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        if isinstance(exc, socket.gaierror) or not exc.errno:
            reason = (exc.strerror or str(exc)).lower()
        else:  # asyncio words it "error while attempting to bind on address (...): ..."
            reason = os.strerror(exc.errno).lower()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = f"; another program uses port {port}: choose another --port, or 0 for any free port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = f"; {host} is not an address of this machine"
        elif exc.errno == errno.EACCES:
            hint = "; ports below 1024 need privileges"
        elif isinstance(exc, socket.gaierror):
            hint = f"; {host!r} is not an address or a known host name"
        super().__init__(f"cannot listen on {host}:{port}: {reason}{hint}")


# --- the server ---------------------------------------------------------------------------------


class Emulator:
    """The Bedrock bidirectional-stream endpoint on loopback. Use as an async context manager."""

    def __init__(
        self,
        handler: StreamHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        hostnames: Sequence[str] = (),
        state_dir: Path | None = None,
        any_credentials: bool = False,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        """`hostnames`: extra names the certificate covers; the first is the endpoint's host (for
        clients that build `https://bedrock-runtime.{region}.amazonaws.com` themselves).
        `state_dir`: where the user's CA and key pair are kept (default: `default_state_dir()`).
        `any_credentials`: accept any well-formed SigV4 signature instead of checking the keys.
        An explicit key pair replaces the stored one."""
        self.handler = handler
        self.host = host
        self.hostnames = tuple(hostnames)
        self.region = region
        self.any_credentials = any_credentials
        self.counters = _Counters()
        self.connections: set[_Connection] = set()
        self._requested_port = port
        self._state_dir = state_dir
        self._explicit_keys = (access_key_id, secret_access_key, session_token)
        self._server: asyncio.Server | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._sequence = 0
        self._closing = False
        self.port = 0
        self.ca_file = Path()
        self.credentials = Credentials("", "")

    # lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            return await self._start()
        except BaseException:
            await self.aclose()  # whatever failed, leave no task behind
            raise

    async def _start(self) -> Self:
        identity = await asyncio.to_thread(load_identity, self._state_dir)
        key_id, secret, token = self._explicit_keys
        self.credentials = Credentials(
            key_id or identity.access_key_id, secret or identity.secret_access_key, token
        )
        self.ca_file = identity.ca_file
        context = await asyncio.to_thread(server_context, identity, [*self.hostnames, self.host])
        tasks = asyncio.TaskGroup()
        await tasks.__aenter__()
        self._tasks = tasks
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), self.host, self._requested_port, ssl=context,
                ssl_handshake_timeout=10,
            )
        except OSError as exc:
            raise ListenError(self.host, self._requested_port, exc) from None
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("emulator listening on %s", self.endpoint)
        if self.any_credentials:
            logger.info("accepting any credentials: signatures must be well-formed but are not checked")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the listener, every connection and every handler, within CLOSE_TIMEOUT-ish."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        connections = list(self.connections)
        for conn in connections:
            conn.close()
            for stream in list(conn.streams.values()):
                stream._cancel_task()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for conn in connections:
                    await conn.lost.wait()
        for conn in connections:
            if not conn.lost.is_set() and conn.transport is not None:
                conn.transport.abort()
        if self._tasks is not None:
            await self._tasks.__aexit__(None, None, None)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT)
        logger.info("emulator closed")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` in the emulator's task group; its failure is logged, never propagated (an
        escaping exception would cancel the task that owns the emulator)."""
        assert self._tasks is not None
        return self._tasks.create_task(self._guarded(coro))

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:
            logger.exception("emulator task failed")

    @property
    def checked_credentials(self) -> Credentials | None:
        """The key pair signatures are checked against; None when any credentials are accepted."""
        return None if self.any_credentials else self.credentials

    @property
    def closing(self) -> bool:
        return self._closing

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def run_handler(self, stream: _Stream) -> None:
        task = asyncio.current_task()
        try:
            await self.handler.handle(stream)
        except asyncio.CancelledError:
            # Cancelled because its stream died: a normal end for the handler, not for the server.
            if self._closing or task is None or not stream.closed:
                raise
            task.uncancel()
        except Exception:
            logger.exception("%s handler failed", stream._label)
            if not stream.closed:
                await stream.send_exception("internalServerException", "The emulator's model handler failed.")
        finally:
            stream.on_handler_done()
            await stream.end()

    # client configuration -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self.hostnames:
            host = self.hostnames[0]
        else:
            host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        netloc = f"[{host}]" if ":" in host else host
        return f"https://{netloc}" if self.port == 443 else f"https://{netloc}:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.endpoint,
            "SSL_CERT_FILE": str(self.ca_file),
            "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
            "AWS_REGION": self.region,
        }

    def export_lines(self) -> list[str]:
        env = self.env()
        return [
            f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={env['AWS_ENDPOINT_URL_BEDROCK_RUNTIME']}",
            f"export SSL_CERT_FILE={env['SSL_CERT_FILE']}",
            f"export AWS_ACCESS_KEY_ID={env['AWS_ACCESS_KEY_ID']} "
            f"AWS_SECRET_ACCESS_KEY={env['AWS_SECRET_ACCESS_KEY']} AWS_REGION={env['AWS_REGION']}",
        ]

    def stats(self) -> EmulatorStats:
        c = self.counters
        return EmulatorStats(
            connections_total=c.connections_total,
            connections_open=c.connections_open,
            streams_total=c.streams_total,
            streams_open=c.streams_open,
            rejected=c.rejected,
            events_in=c.events_in,
            events_out=c.events_out,
            bytes_in=c.bytes_in,
            bytes_out=c.bytes_out,
            chunk_signatures_verified=c.chunk_signatures_verified,
            events_inline=c.events_inline,
        )
