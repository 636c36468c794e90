"""Generic emulator fixtures: run an Emulator with any StreamHandler on a background event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from runner.emulator.api import StreamHandler
from runner.emulator.server import Emulator


@dataclass
class BackgroundEmulator:
    """An Emulator serving from its own thread and loop, so test code can drive the SDK with
    plain `asyncio.run(...)` while one emulator (and one certificate set) serves a whole module."""

    handler: StreamHandler
    emulator: Emulator | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise TimeoutError("emulator did not start within 30 s")
        if self._error is not None or self.emulator is None:
            raise RuntimeError("emulator failed to start") from self._error
        return self.emulator

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with Emulator(self.handler) as emulator:
                self.emulator = emulator
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "emulator thread did not stop within 15 s"


@pytest.fixture(scope="module")
def background_emulator() -> Iterator[Callable[[StreamHandler], Emulator]]:
    """Factory: `background_emulator(handler)` starts an Emulator for the rest of the module."""
    started: list[BackgroundEmulator] = []

    def start(handler: StreamHandler) -> Emulator:
        runner = BackgroundEmulator(handler)
        started.append(runner)
        return runner.start()

    yield start
    for runner in started:
        runner.stop()
