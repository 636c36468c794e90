"""`agent-run serve` as a real subprocess on a free port, and a real WebSocket caller for it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.e2e_helpers import base_env

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "agents" / "orders.yaml"
SCENARIO = REPO / "samples" / "orders.scenario.yaml"
QUESTION_WAV = REPO / "samples" / "where_is_my_order.wav"
CHUNK_S = 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`agent-run serve AGENT [MORE...] --emulate SCENARIO --port P ARGS` in the background."""

    def __init__(self, tmp: Path, *args: str, agent: Path = AGENT, scenario: Path = SCENARIO,
                 env: Mapping[str, str] | None = None, more_agents: Sequence[Path] = ()) -> None:
        self.port = free_port()
        self.transcripts = tmp / "transcripts"
        self.stdout_path, self.stderr_path = tmp / "serve.out", tmp / "serve.err"
        self._out, self._err = self.stdout_path.open("w"), self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "serve", str(agent), *map(str, more_agents),
             "--emulate", str(scenario), "--port", str(self.port), "--transcripts", str(self.transcripts),
             *args],
            cwd=REPO, env=base_env(**(env or {})), stdin=subprocess.DEVNULL, stdout=self._out,
            stderr=self._err)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited {self.proc.returncode}:\n{self.stderr()}"
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve not ready in {timeout_s} s:\n{self.stderr()}")

    def wait_idle(self, timeout_s: float = 10.0) -> float:
        """Wait until no conversation is live (/ping says Healthy); how long it took."""
        start = time.monotonic()
        while self.get_json("/ping")[1]["status"] != "Healthy":
            assert time.monotonic() - start < timeout_s, "conversations still live"
            time.sleep(0.05)
        return time.monotonic() - start

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, body = self.get(path)
        return status, json.loads(body)

    def metric(self, name: str) -> float:
        """The sum of every sample of `name` (all labels) in /metrics."""
        total = 0.0
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def transcript_files(self) -> list[Path]:
        return sorted(self.transcripts.glob("*.jsonl")) if self.transcripts.is_dir() else []

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CallLog:
    """What a caller received: JSON messages in order and the assistant's audio."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def said(self, role: str) -> list[str]:
        return [m["text"] for m in self.of("transcript") if m["role"] == role]


def read_pcm(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


async def stream_pcm(ws: ClientConnection, pcm: bytes, rate: int, *, then_silence_s: float = 0.0) -> None:
    """Send `pcm` in 20 ms frames in real time, then silence (as a microphone would)."""
    chunk = int(rate * CHUNK_S) * 2
    silence = bytes(chunk)
    frames = [pcm[i:i + chunk] for i in range(0, len(pcm), chunk)]
    frames += [silence] * int(then_silence_s / CHUNK_S)
    start = time.monotonic()
    for n, frame in enumerate(frames):
        await ws.send(frame)
        await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.monotonic()))


async def receive_until(ws: ClientConnection, log: CallLog, done: Any, timeout_s: float) -> None:
    """Collect messages into `log` until `done(log)` is true, the socket closes, or the time is up."""
    try:
        async with asyncio.timeout(timeout_s):
            while not done(log):
                message = await ws.recv()
                if isinstance(message, bytes):
                    log.audio_bytes += len(message)
                else:
                    log.messages.append(json.loads(message))
    except ConnectionClosed as closed:
        if closed.rcvd is not None:
            log.close_code, log.close_reason = closed.rcvd.code, closed.rcvd.reason
    except TimeoutError:
        pass


def open_ws(url: str, *, headers: Sequence[tuple[str, str]] = ()) -> Any:
    return connect(url, additional_headers=list(headers), open_timeout=10, close_timeout=5)


def transcript_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
