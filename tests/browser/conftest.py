"""Fixtures of the browser tests: the system Chromium (Debian's `chromium`), a WAV microphone, and
the page's static files served by a plain HTTP server (for tests that need no agent)."""

from __future__ import annotations

import functools
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cdp import find_chromium

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "runner" / "serve" / "static"
SERVING = re.compile(r"serving .+? on (http://\S+/)")

type Serve = Callable[..., str]


@pytest.fixture(scope="session")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip("chromium not installed (Debian package `chromium`; scripts/dev and CI install it)")
    return found


@pytest.fixture(scope="session")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """samples/where_is_my_order.wav for Chromium's fake microphone (`%noloop`: played once from
    getUserMedia on): 1.5 s of silence first, because the page sends audio only once the server is
    ready, and 2 s after, so the agent hears the end of the question. 16-bit mono at 48 kHz."""
    out = tmp_path_factory.mktemp("mic") / "where_is_my_order.wav"
    subprocess.run(["sox", str(ROOT / "samples" / "where_is_my_order.wav"),
                    "-b", "16", "-c", "1", "-r", "48000", str(out), "pad", "1.5", "2"],
                   check=True, capture_output=True, timeout=30)
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def static_url() -> Iterator[str]:
    """http://127.0.0.1:PORT/ serving runner/serve/static (a secure context, like the real server)."""
    handler = functools.partial(_QuietHandler, directory=str(STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """`serve(*args, more_agents=())` starts the orders agent's server (and more agents') on a free
    port and returns its URL; it is stopped (SIGTERM, then killed if it lingers) at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, more_agents: tuple[str, ...] = ()) -> str:
        log = tmp_path / f"serve{len(started)}.stderr"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runner", "serve", "agents/orders.yaml", *more_agents,
                 "--emulate", "samples/orders.scenario.yaml", "--port", "0", *args],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        started.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if found := SERVING.search(log.read_text(errors="replace")):
                return found.group(1)
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"agent-run serve did not start: {log.read_text(errors='replace')}")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
