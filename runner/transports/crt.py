"""smithy's AWSCRTHTTPClient with a lean HTTP/2 request-body writer (issue 11).

Every input event of a Bedrock stream is one chunk of the request body. awscrt's stock writer
(`AIOHttp2ClientStream._set_request_body_generator`, awscrt 0.32.2) awaits each chunk's write
completion, which the CRT thread signals with `call_soon_threadsafe`: per event that is a second
step of the writer task, a self-pipe wake-up of the loop and a `_chain_future` callback
(~150-200 µs on a cold cache, at 31 events/s for 32 ms chunks). The writer here hands each chunk
to CRT with the manual-write call and does not wait for it: CRT's thread reports each completion
into a queue the writer looks at when the next chunk comes, and the loop is woken for one only when
MAX_WRITES_IN_FLIGHT writes are outstanding, so back-pressure (a peer that stops reading) still
reaches `input_stream.send()` through smithy's 16-chunk AsyncBytesProvider. With the pinned awscrt
the call is the C one that `Http2ClientStream.write_data` makes, with a lean chunk object and one
callback per stream instead of a BytesIO, an InputStream, a closure and a concurrent Future per
write (`_queue_chunk`); with another version, `write_data` itself.

awscrt enters Python from its C thread several times per write (two reads of the chunk, its
completion, the chunk's release), each time making and deleting a Python thread state; while a lean
stream is open, that thread keeps one instead (`_keep_thread_state`, CPython 3.12 only): about half
of CRT's thread CPU per write, measured.

When the body is smithy's AsyncBytesProvider (an event stream's input), the writer iterates it
directly, and the stream offers `write_nowait`: the SDK send fast path (sdk_send.py) hands a
signed frame straight to CRT when that cannot reorder anything (the writer is parked waiting for
the provider, which is empty), saving the provider's write and a step of the writer task per event.

Before the response headers arrive, the writer keeps what it has queued on the stream within
HTTP/2's default window (EARLY_WINDOW), then waits for them: aws-c-http (awscrt 0.32.2) never
resumes a stream whose send window ran out before the server's SETTINGS raised the initial window
(it applies the SETTINGS delta but leaves the stream on its stalled list until a WINDOW_UPDATE for
that stream, which a server with a large window may never send). Response headers come after the
server's SETTINGS, so once they are in, flow control works as the server set it up.

Everything else is smithy's: connection pool, TLS context (SSL_CERT_FILE), timeouts, HTTP/1.1
handling. awscrt chooses the connection class itself (`_HttpClientConnectionCore`), so the
lean stream is created through a small view of the pooled connection that smithy's `send()` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import sys
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future, InvalidStateError
from copy import deepcopy
from io import BytesIO
from typing import Any, Final, TypeGuard

import _awscrt  # type: ignore[import-not-found]  # awscrt's C extension (no type hints)
from awscrt.aio.http import AIOHttp2ClientStream
from awscrt.exceptions import from_code
from awscrt.http import Http2ClientStream, HttpVersion
from smithy_core.aio.types import AsyncBytesProvider
from smithy_core.interfaces import URI
from smithy_http.aio.crt import AWSCRTHTTPClient

from runner.transports.pins import installed

# Writes handed to CRT and not yet completed before the writer waits for the oldest. A write
# normally completes within a millisecond, so at real-time rates the writer never waits; the
# bound only matters when the peer stops reading (HTTP/2 flow control), and keeps what CRT holds
# to 16 events (~64 KB of audio) on top of smithy's 16-chunk buffer.
MAX_WRITES_IN_FLIGHT = 16
# write_nowait reads the provider's private state (smithy-core 0.9.0's AsyncBytesProvider): with
# another version, or a provider that does not look the same, frames take the provider's path.
SMITHY_CORE: Final = "0.9.0"
# What a stream may queue before the response headers (hence the server's SETTINGS) have arrived:
# HTTP/2's default initial window (65535 B) less aws-c-http's stall threshold (a stream stalls once
# its window is down to 256 B) and one more byte.
EARLY_WINDOW: Final = 65535 - 256 - 1
# The per-write path (`_queue_chunk`) calls awscrt's C extension directly, as awscrt 0.32.2's own
# `write_data` does, with a body object and a completion callback of its own (see `_Chunk`): with
# another awscrt version, each chunk takes the public `write_data`.
AWSCRT: Final = "0.32.2"
# The CPython whose PyGILState_Ensure/Release `_keep_thread_state` relies on (3.12, with the GIL).
PYTHON: Final = (3, 12)
_PROVIDER_STATE: Final = (("_data", deque), ("_closed", bool), ("_closing", bool), ("_flushing", bool),
                          ("_data_condition", asyncio.Condition))

# Provider -> the lean stream writing it, while its writer runs. Weak both ways: the stream holds
# its provider, so a strong value would keep the key (and the stream) alive for ever.
_writers: weakref.WeakKeyDictionary[AsyncBytesProvider, weakref.ref[LeanHttp2Stream]] = (
    weakref.WeakKeyDictionary())


def direct_writer(body: object) -> LeanHttp2Stream | None:
    """The lean stream whose writer is now reading `body` (an SDK stream's AsyncBytesProvider,
    the publisher's `_writer`), for `write_nowait`; None if there is none (yet, or any more)."""
    if not isinstance(body, AsyncBytesProvider):
        return None
    ref = _writers.get(body)
    return None if ref is None else ref()


class LeanCRTHTTPClient(AWSCRTHTTPClient):
    """AWSCRTHTTPClient whose HTTP/2 request bodies are written by `LeanHttp2Stream`."""

    async def _get_connection(self, url: URI) -> Any:
        connection = await super()._get_connection(url)
        if connection.version is HttpVersion.Http2:
            return _LeanConnectionView(connection)
        return connection  # HTTP/1.1: smithy buffers the body itself, no writer involved

    def __deepcopy__(self, memo: Any) -> LeanCRTHTTPClient:
        # smithy's __deepcopy__ would hand back a stock AWSCRTHTTPClient. (The SDK's config shares
        # its transport when it is deep-copied, but a copy of the client itself must stay lean.)
        return LeanCRTHTTPClient(eventloop=self._eventloop, client_config=deepcopy(self._config, memo))

    def _create_body_generator(self, body: Any) -> AsyncIterator[bytes]:  # type: ignore[override]
        # smithy wraps the body in an async generator whatever it is. An AsyncBytesProvider is
        # already an async iterator of bytes: the lean writer reads it as it is (one async layer
        # less per chunk) and can tell it is the provider (for write_nowait).
        if isinstance(body, AsyncBytesProvider):
            return body
        return super()._create_body_generator(body)


class _LeanConnectionView:
    """What smithy's `send()` uses of a pooled HTTP/2 connection (`version`, `request()`),
    opening `LeanHttp2Stream`s on it. The pool keeps the real connection."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.version = connection.version

    def request(self, request: Any, request_body_generator: AsyncIterator[bytes] | None = None,
                loop: asyncio.AbstractEventLoop | None = None) -> LeanHttp2Stream:
        return LeanHttp2Stream(self._connection, request, request_body_generator, loop)


class LeanHttp2Stream(AIOHttp2ClientStream):  # type: ignore[misc]  # awscrt ships no type hints
    """An HTTP/2 client stream whose body writer does not wait for each write to complete, and
    which takes a chunk straight from the sender (`write_nowait`) when the writer is idle."""

    # awscrt's public manual-write call: queue one DATA write on this stream, get a concurrent
    # Future that the CRT thread completes. Its only state is that Future (thread-safe). Used for
    # END_STREAM, and for every chunk with an awscrt other than the pinned one (see `_queue_chunk`).
    write_data = Http2ClientStream.write_data

    # The writer's state, shared with write_nowait (both run on the loop's thread only).
    _idle = False  # the writer is parked waiting for the provider's next chunk, holding none
    _ending = False  # the writer has stopped taking chunks (END_STREAM queued or about to be)
    _failed: BaseException | None = None  # a write that failed: every later write fails with it
    _provider: AsyncBytesProvider | None = None  # set while write_nowait may be used
    _early: int | None = 0  # bytes queued before the response headers; None once they are in
    _direct = False  # chunks go through awscrt's C call with a `_Chunk` (the pinned awscrt)
    _queued = 0  # chunk writes handed to CRT (END_STREAM's not counted)
    _reaped = 0  # of those, the completions taken from `_done`
    _waiter: asyncio.Future[None] | None = None  # the writer waits for a completion (in-flight bound)
    _keep = False  # keep the Python thread state of CRT's thread while this stream is open
    _kept_on: int | None = None  # the thread whose state this stream keeps (`_keep_thread_state`)

    async def _set_request_body_generator(self, body_iterator: AsyncIterator[bytes]) -> None:
        # Completions of the chunk writes: None, or the write's error. CRT's thread appends them
        # (holding the GIL) and the loop's thread takes them (`_reap`); deque's append and popleft
        # are atomic. A count, not a Future per write: the writer only needs how many are still
        # in flight (CRT completes a stream's writes in the order they were queued) and any error.
        self._done: deque[BaseException | None] = deque()
        self._direct = _awscrt_pinned()
        self._keep = self._direct and _thread_states_keepable()
        provider = body_iterator if _direct_capable(body_iterator) else None
        if provider is not None:
            self._provider = provider
            _writers[provider] = weakref.ref(self)
        cancelled = False
        try:
            iterator = aiter(body_iterator)
            while True:
                self._idle = True
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                finally:
                    self._idle = False
                self._reap()  # a failed write ends the writer with its error
                if not self._early_room(len(chunk)):
                    await self._response_or_end()
                    self._early = None
                while self._queued - self._reaped >= MAX_WRITES_IN_FLIGHT:
                    await self._a_write_completes()
                    self._reap()
                self._queue_chunk(chunk)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self._ending = True
            if provider is not None:
                _writers.pop(provider, None)
            # END_STREAM exactly once, on every path. CRT sends a stream's writes in the order
            # they were queued, so it goes after every earlier chunk without waiting for them.
            end = self.write_data(None, True)
            if not cancelled:
                # As the stock writer does: the writer ends when the body is really sent, and a
                # stream that has already ended (reset, dropped) fails here.
                await asyncio.wrap_future(end, loop=self._loop)
        # Every earlier write has completed by now (CRT completes a stream's writes in order, and
        # END_STREAM's completion was reported after theirs): raise a failed one's error.
        self._reap()

    @property
    def writes_pending(self) -> int:
        """Chunk writes queued on CRT and not yet complete (for tests and diagnostics)."""
        return self._queued - self._reaped - len(getattr(self, "_done", ()))

    def write_nowait(self, chunk: bytes) -> bool:
        """Queue `chunk` on this stream now, as the writer would, if nothing can be ahead of it:
        the writer is parked waiting for the provider with no chunk in hand, the provider is empty
        and nobody is inside it, END_STREAM is not queued and fewer than MAX_WRITES_IN_FLIGHT
        writes are outstanding. Then CRT's in-order writes keep the body's order, and whatever the
        provider gets later (the signed end-of-input frame) goes after it. Returns False (nothing
        done: write it to the provider) otherwise. Raises the error of an earlier failed write
        (which the writer also ends with when it next wakes).
        """
        provider = self._provider
        if not self._idle or self._ending or provider is None:
            return False
        if (provider._data or provider._closed or provider._closing or provider._flushing
                or provider._data_condition.locked()):
            return False
        self._reap()
        if self._queued - self._reaped >= MAX_WRITES_IN_FLIGHT:
            return False  # the writer waits for the oldest write (back-pressure) on the slow path
        if not self._early_room(len(chunk)):
            return False  # the writer waits for the response headers on the slow path
        try:
            self._queue_chunk(chunk)
        except Exception as exc:
            self._failed = exc
            raise
        return True

    def _queue_chunk(self, chunk: bytes) -> None:
        """Hand `chunk` to CRT as this stream's next DATA write; its completion goes to `_done`.

        With the pinned awscrt, through the C call its `write_data` makes, minus what each write
        costs there: a BytesIO and an awscrt InputStream around the chunk, a concurrent Future and
        a closure per write, and on CRT's thread the Future's lock and notify. Raises (nothing
        queued) if CRT refuses the write, as `write_data` does."""
        if self._direct:
            _awscrt.http2_client_stream_write_data(self, _Chunk(chunk), False, self._on_write)
        else:
            self.write_data(BytesIO(chunk), False).add_done_callback(self._on_write_future)
        self._queued += 1

    def _on_write(self, error_code: int) -> None:
        """A chunk write completed (CRT's thread, holding the GIL; awscrt's own callback contract)."""
        if self._keep and self._kept_on is None:
            self._kept_on = _keep_thread_state()
        self._done.append(from_code(error_code) if error_code else None)
        self._wake_writer()

    def _on_complete(self, error_code: int) -> None:
        # The stream is over (CRT's thread): its thread's Python state goes back to awscrt's own
        # handling, unless another open stream keeps it. (An awscrt callback: pinned version only.)
        self._keep = False
        try:
            super()._on_complete(error_code)
        finally:
            kept_on = self._kept_on
            if kept_on is not None and _release_thread_state(kept_on):
                self._kept_on = None

    def _on_write_future(self, write: Future[None]) -> None:
        """A chunk write of the public `write_data` completed (CRT's thread)."""
        # (Nobody else holds these Futures, so none is cancelled; if one were, it is a failure.)
        self._done.append(RuntimeError("body write cancelled") if write.cancelled() else write.exception())
        self._wake_writer()

    def _wake_writer(self) -> None:
        # After the append: the writer sets `_waiter` before it looks at `_done`, so a completion
        # either is seen there or finds the waiter (both sides hold the GIL for each step).
        waiter = self._waiter
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                self._loop.call_soon_threadsafe(_set_done, waiter)

    async def _a_write_completes(self) -> None:
        """Until CRT reports another chunk write complete (at once if one is already in `_done`).
        Not bounded here, as the stock writer's wait for each write: a stalled peer blocks the
        sender (smithy's provider, bounded by its send timeout), and a stream that ends (reset,
        dropped) fails its queued writes, which wakes this."""
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            if not self._done:
                await waiter
        finally:
            self._waiter = None

    def _early_room(self, size: int) -> bool:
        """Whether a chunk of `size` bytes may be queued now: always once the response headers are
        in; before that, while what is queued stays within EARLY_WINDOW (counted here)."""
        early = self._early
        if early is None:
            return True
        if self._response_status_future.done():
            self._early = None
            return True
        if early + size > EARLY_WINDOW:
            return False
        self._early = early + size
        return True

    async def _response_or_end(self) -> None:
        """Until the response headers arrive or the stream completes (reset, dropped: the next
        write then fails with its error). Not by wrapping awscrt's concurrent Futures: cancelling
        a wrapper cancels the Future itself, and CRT's thread then fails to set it."""
        loop = self._loop
        woken = loop.create_future()

        def wake(_: object) -> None:
            loop.call_soon_threadsafe(_set_done, woken)

        self._response_status_future.add_done_callback(wake)
        self._completion_future.add_done_callback(wake)
        await woken

    # awscrt hands each response chunk to a concurrent Future that a reader awaits through a
    # wrapper; when the reader is cancelled, so is that Future, and awscrt's `set_result` on it
    # then raises InvalidStateError in CRT's thread (logged as an unraisable exception).
    def _on_body(self, chunk: bytes) -> None:
        with self._deque_lock:
            if self._chunk_futures:
                future = self._chunk_futures.popleft()
            else:
                self._received_chunks.append(chunk)
                return
        with contextlib.suppress(InvalidStateError):  # a reader that was cancelled: nobody wants it
            future.set_result(chunk)

    def _resolve_pending_chunk_futures(self) -> None:
        with self._deque_lock:
            pending = list(self._chunk_futures)
            self._chunk_futures.clear()
        for future in pending:
            with contextlib.suppress(InvalidStateError):
                future.set_result(b"")

    def _reap(self) -> None:
        """Take the completed writes' reports; raise a failed one's error (and keep it: the writer
        and the sender both learn of it, whichever comes first)."""
        if self._failed is not None:
            raise self._failed
        done = self._done
        while done:
            error = done.popleft()
            self._reaped += 1
            if error is not None:
                self._failed = error
                raise error


class _Chunk:
    """One chunk as awscrt's C input stream reads it (awscrt 0.32.2, `source/io.c`): `_binding`, the
    capsule `_awscrt.input_stream_new(self)` returns, and `_read_into_memoryview(m)`, which returns
    how many bytes it put into m, 0 meaning the end. aws-c-http reads a write again until it gets
    that 0, so the second read must find nothing. CRT holds a reference while the write is queued."""

    __slots__ = ("_binding", "_data")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._binding = _awscrt.input_stream_new(self)

    def _read_into_memoryview(self, m: memoryview) -> int:
        data = self._data
        n = len(data)
        if n > len(m):  # less room in this frame (the peer's window): the rest goes in the next
            n = len(m)
            m[:] = data[:n]
            self._data = data[n:]
            return n
        m[:n] = data
        self._data = b""
        return n


# Thread ident -> how many open lean streams keep its Python thread state. Each entry is only
# changed on its own thread, holding the GIL.
_kept_states: dict[int, int] = {}


def _keep_thread_state() -> int:
    """Keep the calling thread's Python thread state (CRT's event-loop thread, in an awscrt callback)
    until `_release_thread_state`; returns the thread's ident.

    awscrt enters Python from its C thread with PyGILState_Ensure and leaves with PyGILState_Release
    for each callback: several per write (two reads of the chunk, the completion, the release of the
    chunk) and per response chunk. On a thread Python did not start, each pair creates a thread
    state and deletes it (with its 16 KB frame stack: an mmap and munmap per callback that runs
    Python). One PyGILState_Ensure more, not yet matched, keeps the state between callbacks (what
    pybind11's `gil_scoped_acquire.inc_ref()` is for): measured ~40-50 µs less of CRT's thread per
    write. Meanwhile the thread is to CPython what a daemon thread is: if the interpreter exits with
    the state still kept, it is freed with the others and a later awscrt callback finds
    Py_IsInitialized() false (or exits in take_gil, as a daemon thread does: CPython 3.12)."""
    ident = threading.get_ident()
    count = _kept_states.get(ident, 0)
    if count == 0:
        _gilstate_api()[0]()
    _kept_states[ident] = count + 1
    return ident


def _release_thread_state(ident: int) -> bool:
    """Undo one `_keep_thread_state` of thread `ident`, if this is that thread (False if not: a
    thread's state can only be released on it). The last one makes the state awscrt's again: its
    PyGILState_Release, once this callback returns, deletes it."""
    if threading.get_ident() != ident:
        return False
    count = _kept_states.pop(ident) - 1
    if count:
        _kept_states[ident] = count
    else:
        _gilstate_api()[1](0)  # PyGILState_LOCKED: the GIL stays held, as awscrt expects
    return True


@functools.cache
def _gilstate_api() -> tuple[Any, Any]:
    """PyGILState_Ensure and PyGILState_Release, called holding the GIL (ctypes' PYFUNCTYPE)."""
    ensure = ctypes.PYFUNCTYPE(ctypes.c_int)(("PyGILState_Ensure", ctypes.pythonapi))
    release = ctypes.PYFUNCTYPE(None, ctypes.c_int)(("PyGILState_Release", ctypes.pythonapi))
    return ensure, release


def _thread_states_keepable() -> bool:
    """Whether `_keep_thread_state` may be used: CPython 3.12 with the GIL, ctypes' Python API."""
    if sys.implementation.name != "cpython" or sys.version_info[:2] != PYTHON:
        return False
    try:
        _gilstate_api()
    except (AttributeError, OSError):
        return False
    return True


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _direct_capable(body: object) -> TypeGuard[AsyncBytesProvider]:
    """Whether write_nowait may read this body's state: a provider shaped as in smithy-core 0.9.0."""
    return (isinstance(body, AsyncBytesProvider) and _smithy_core_pinned()
            and all(isinstance(getattr(body, name, None), kind) for name, kind in _PROVIDER_STATE))


def _smithy_core_pinned() -> bool:
    return installed("smithy-core") == SMITHY_CORE


def _awscrt_pinned() -> bool:
    """Whether chunks may go through awscrt's C call with a `_Chunk` (see `_queue_chunk`)."""
    return (installed("awscrt") == AWSCRT
            and all(callable(getattr(_awscrt, name, None))
                    for name in ("input_stream_new", "http2_client_stream_write_data")))


