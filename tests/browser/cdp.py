"""A small Chrome DevTools Protocol client for the browser tests: Debian's Chromium, headless.

The browser is driven over `--remote-debugging-pipe` (JSON messages separated by NUL bytes on the
browser's fds 3 and 4), so no port is opened and nothing but the system Chromium is needed. Every
wait is bounded; on failure, what the page printed to its console is in `Page.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The system Chromium's path, or None (`$AGENT_RUN_CHROMIUM` names another)."""
    configured = os.environ.get("AGENT_RUN_CHROMIUM")
    if configured:
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process and its DevTools pipe (an async context manager)."""

    def __init__(self, executable: str, profile: Path, *, fake_audio: Path | None = None,
                 args: Sequence[str] = ()) -> None:
        self.executable = executable
        self.profile = profile
        self.fake_audio = fake_audio
        self.args = list(args)
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._sessions: dict[str, Page] = {}
        self.stderr_path = profile / "chromium.stderr"

    def command_line(self) -> list[str]:
        args = [
            self.executable, "--headless=new", "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-gpu", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
        ]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
        if self.fake_audio is not None:
            args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={self.fake_audio}%noloop"]
        return [*args, *self.args, "about:blank"]

    async def __aenter__(self) -> Browser:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # The browser reads commands on fd 3 and writes answers on fd 4.
        wrapper = ["bash", "-c", f'exec 3<&{to_browser_r} 4>&{from_browser_w}; exec "$@"', "chromium"]
        stderr = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *wrapper, *self.command_line(), stdin=asyncio.subprocess.DEVNULL,
                stdout=stderr, stderr=stderr, pass_fds=(to_browser_r, from_browser_w),
                start_new_session=True)
        finally:
            os.close(stderr)
        os.close(to_browser_r)
        os.close(from_browser_w)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(from_browser_r, "rb", buffering=0))
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                            os.fdopen(to_browser_w, "wb", buffering=0))
        self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._reader_task = asyncio.create_task(self._read(reader))
        try:
            version = await self.send("Browser.getVersion", wait_s=30)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self.version = str(version.get("product", "?"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("Browser.close", wait_s=5)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 10)
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        self._proc = None

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\0")
                message = json.loads(raw[:-1])
                if "id" in message:
                    future = self._waiting.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif (page := self._sessions.get(message.get("sessionId", ""))) is not None:
                    page.on_event(message["method"], message.get("params", {}))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(CdpError(f"Chromium exited; its output: {self.stderr()}"))

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
                   wait_s: float = 10) -> dict[str, Any]:
        """Send one command and return its result (CdpError when the browser answers an error)."""
        assert self._writer is not None, "the browser is not running"
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        self._writer.write(json.dumps(message).encode() + b"\0")
        await self._writer.drain()
        try:
            answer = await asyncio.wait_for(future, wait_s)
        except TimeoutError:
            raise CdpError(f"{method}: no answer from Chromium within {wait_s} s") from None
        finally:
            self._waiting.pop(message["id"], None)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    @contextlib.asynccontextmanager
    async def page(self, url: str) -> AsyncIterator[Page]:
        """A new tab, navigated to `url` and loaded; closed afterwards."""
        target = (await self.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attached = await self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = attached["sessionId"]
        page = Page(self, session)
        self._sessions[session] = page
        try:
            await page.call("Runtime.enable")
            await page.call("Page.enable")
            await page.navigate(url)
            yield page
        finally:
            self._sessions.pop(session, None)
            with contextlib.suppress(CdpError):
                await self.send("Target.closeTarget", {"targetId": target})


class Page:
    """One tab: evaluate JavaScript, wait for conditions, and keep what its console printed."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.log: list[str] = []
        self._loaded = asyncio.Event()

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.log.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            described = details.get("exception", {}).get("description") or details.get("text")
            self.log.append(f"exception: {described}")
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   wait_s: float = 10) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session, wait_s=wait_s)

    async def navigate(self, url: str, wait_s: float = 20) -> None:
        self._loaded.clear()
        answer = await self.call("Page.navigate", {"url": url}, wait_s=wait_s)
        if answer.get("errorText"):
            raise CdpError(f"navigating to {url}: {answer['errorText']}")
        try:
            await asyncio.wait_for(self._loaded.wait(), wait_s)
        except TimeoutError:
            raise CdpError(f"{url} did not finish loading within {wait_s} s") from None

    async def evaluate(self, expression: str, *, await_promise: bool = False, user_gesture: bool = False,
                       wait_s: float = 10) -> Any:
        """The JSON value of `expression` in the page (CdpError with the page's message if it threw)."""
        answer = await self.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise,
            "userGesture": user_gesture}, wait_s=wait_s)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            described = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"{expression[:80]!r} threw: {described}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, what: str, wait_s: float = 20, interval: float = 0.1) -> Any:
        """Poll `expression` until it is truthy; its value, or AssertionError naming `what`."""
        deadline = asyncio.get_running_loop().time() + wait_s
        value: Any = None
        while asyncio.get_running_loop().time() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(interval)
        raise AssertionError(f"timed out after {wait_s} s waiting for {what}; last value {value!r}; "
                             f"page console: {self.log[-20:]}")

    async def click(self, selector: str) -> None:
        """Click like a user would (a user gesture, so audio may start)."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()", user_gesture=True)
