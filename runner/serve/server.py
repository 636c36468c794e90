"""Runs the app on uvicorn (the only module that imports it), and drains on SIGTERM/SIGINT/SIGHUP.

Drain (the first stop signal): readiness turns false and new callers are refused (WebSocket close
1013, HTTP 503); live conversations go on until their callers hang up, for at most
`--drain-timeout` seconds; then each one still live is ended in the documented order (sessionEnd
to the service, its transcript's end record), its caller's socket closed with 1001, and the server
exits. A second signal skips the rest of the wait. The exit status is 128 + the first signal's
number (143 for SIGTERM), as for every agent-run command (runner.signals).

uvicorn's own signal handling is left out: it would close every WebSocket at once (1012).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from runner.errors import RunnerError
from runner.serve.conversations import STOP_WAIT_S
from runner.signals import STOP_SIGNALS, exit_code, signal_name

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from runner.console import Console
    from runner.serve.context import ServeContext

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the drain handles them (see the module docstring)
        yield


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket first, so a taken port is one clear line, not a log of uvicorn's."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise RunnerError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise RunnerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(ctx: ServeContext, app: Starlette, sock: socket.socket, console: Console) -> int:
    """Serve until drained after a stop signal; returns the exit status."""
    # proxy_headers off: runner.serve.forwarded applies X-Forwarded-* itself, for trusted proxies only.
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,  # URLs hold tokens
                            proxy_headers=False,
                            ws="websockets-sansio", timeout_graceful_shutdown=int(STOP_WAIT_S))
    # No permessage-deflate (browsers offer it): PCM audio barely compresses, every 20 ms frame both
    # ways would cost a zlib pass, and the zlib states made and freed with each caller left the
    # worker ~10 kB larger after every spoken conversation (bench/bench_memory.py --wav, bench/README.md).
    config.ws_per_message_deflate = False
    server = _Server(config)
    drain = _Drain(ctx, server, console)
    watch = asyncio.get_running_loop().create_task(ctx.metrics.watch_loop(), name="loop lag")
    try:
        with drain.signals():
            await server.serve(sockets=[sock])
    finally:
        watch.cancel()
    return drain.code


class _Drain:
    def __init__(self, ctx: ServeContext, server: uvicorn.Server, console: Console) -> None:
        self._ctx = ctx
        self._server = server
        self._console = console
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self.code = 0

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        for signum in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(signum, self.on_signal, signum)
                installed.append(signum)
        try:
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def on_signal(self, signum: int) -> None:
        if self._task is not None:  # a second signal: end the live conversations now
            self._hurry.set()
            return
        self.code = exit_code(signum)
        self._task = asyncio.get_running_loop().create_task(self._drain(signal_name(signum)), name="drain")

    async def _drain(self, name: str) -> None:
        ctx = self._ctx
        ctx.draining = True
        timeout = ctx.settings.drain_timeout_s
        self._console.info(f"{name}: draining: {ctx.live_count} live conversation(s), up to {timeout:g} s; "
                           "new callers are refused")
        idle = asyncio.create_task(ctx.wait_idle(timeout))
        hurry = asyncio.create_task(self._hurry.wait())
        await asyncio.wait({idle, hurry}, return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        if not idle.done() or not idle.result():
            idle.cancel()
            self._console.info(f"ending {ctx.live_count} live conversation(s)")
            ctx.stop_all("server shutting down")
            await ctx.wait_idle(STOP_WAIT_S + 1)
        self._server.should_exit = True
