"""Headless Firefox (Debian's `firefox-esr`) driven over WebDriver BiDi, for the page's
Firefox checks: the same small surface as cdp.Page (evaluate, wait_for, click).

Firefox gives no WAV microphone: the tests give it PulseAudio (tests/audio_env.sh) and play the WAV
into its source, or `media.navigator.streams.fake` (a tone). `media.navigator.permission.disabled`
grants the microphone without a prompt. Without an audio device, Firefox never starts an
AudioContext: hence PulseAudio's null sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "remote.prefs.recommended": True,
}
LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://\S+)")


def find_firefox() -> str | None:
    for name in ("firefox-esr", "firefox"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BidiError(RuntimeError):
    pass


class Firefox:
    """One headless Firefox and its BiDi session, with one tab (an async context manager)."""

    def __init__(self, executable: str, profile: Path, env: dict[str, str] | None = None, *,
                 fake_media: bool = True) -> None:
        self.executable = executable
        self.env = env
        self.fake_media = fake_media
        self.profile = profile
        self.log: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._ws: ClientConnection | None = None
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.context = ""

    async def __aenter__(self) -> Firefox:
        self.profile.mkdir(parents=True, exist_ok=True)
        prefs = {**PREFS, "media.navigator.streams.fake": self.fake_media}
        (self.profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items()))
        self._proc = await asyncio.create_subprocess_exec(
            self.executable, "--headless", "--no-remote", "--profile", str(self.profile),
            "--remote-debugging-port=0", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            env={**os.environ, **(self.env or {})})
        try:
            url = await asyncio.wait_for(self._listening(), 60)
            self._ws = await connect(url + "/session", max_size=None, open_timeout=20)
            self._reader = asyncio.create_task(self._read())
            await self.send("session.new", {"capabilities": {}})
            await self.send("session.subscribe", {"events": ["log.entryAdded"]})
            tree = await self.send("browsingContext.getTree", {})
            self.context = tree["contexts"][0]["context"]
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _listening(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        seen = b""
        while line := await self._proc.stderr.readline():
            seen += line
            if found := LISTENING.search(line):
                # keep draining stderr so that Firefox never blocks on a full pipe
                asyncio.create_task(self._drain(self._proc.stderr))  # noqa: RUF006 (ends with the pipe)
                return found.group(1).decode()
        raise BidiError(f"firefox exited before listening: {seen.decode(errors='replace')[-2000:]}")

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self.send("browser.close", {}, wait_s=5)
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 10)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if (future := self._waiting.pop(message.get("id", -1), None)) is not None:
                    future.set_result(message)
                elif message.get("method") == "log.entryAdded":
                    entry = message["params"]
                    self.log.append(f"{entry.get('level')}: {entry.get('text')}")
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(BidiError("the BiDi connection closed"))

    async def send(self, method: str, params: dict[str, Any], wait_s: float = 10) -> dict[str, Any]:
        assert self._ws is not None
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        await self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        try:
            answer = await asyncio.wait_for(future, wait_s)
        except TimeoutError:
            raise BidiError(f"{method}: no answer from Firefox within {wait_s} s") from None
        if answer.get("type") == "error":
            raise BidiError(f"{method}: {answer.get('error')}: {answer.get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    @contextlib.asynccontextmanager
    async def page(self, url: str) -> AsyncIterator[Firefox]:
        await self.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"},
                        wait_s=30)
        yield self

    async def evaluate(self, expression: str, *, await_promise: bool = False, user_gesture: bool = False,
                       wait_s: float = 10) -> Any:
        """The JSON value of `expression` (a promise's value when await_promise)."""
        wrapped = f"(async () => JSON.stringify(await ({expression})))()" if await_promise else \
            f"JSON.stringify({expression})"
        answer = await self.send("script.evaluate", {
            "expression": wrapped, "target": {"context": self.context}, "awaitPromise": True,
            "userActivation": user_gesture, "resultOwnership": "none"}, wait_s=wait_s)
        if answer.get("type") == "exception":
            details = answer.get("exceptionDetails", {})
            raise BidiError(f"{expression[:80]!r} threw: {details.get('text')}")
        value = answer["result"].get("value")
        return None if value is None else json.loads(value)

    async def wait_for(self, expression: str, what: str, wait_s: float = 20, interval: float = 0.1) -> Any:
        deadline = asyncio.get_running_loop().time() + wait_s
        value: Any = None
        while asyncio.get_running_loop().time() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(interval)
        raise AssertionError(f"timed out after {wait_s} s waiting for {what}; last value {value!r}; "
                             f"console: {self.log[-20:]}")

    async def click(self, selector: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()", user_gesture=True)
