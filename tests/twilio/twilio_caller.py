"""A simulated Twilio: `agent-run serve` as a subprocess, and a caller speaking Media Streams to it.

`TwilioCaller` does what Twilio does on a `<Connect><Stream>` call: it opens the WebSocket (signed
when given an auth token), sends `connected` and `start` (callSid, customParameters), then the
caller's audio as base64 μ-law media frames of 20 ms paced in real time (a WAV resampled to 8 kHz
with soxr), keypad digits as `dtmf`, and `stop` when it hangs up. It "plays" the assistant's media
frames on a real-time clock, answers each mark when the audio sent before it has played, and on a
`clear` drops what it has not played and answers the outstanding marks at once, as Twilio does.
With `start_delay_s`, audio that arrives while nothing plays starts playing that much later (a
media path that buffers before it plays): marks, which Twilio echoes once the audio before them has
played, then come back later by as much.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runner.audio.g711 import ulaw_decode, ulaw_encode
from runner.audio.resample import Resampler
from runner.serve.frontends.twilio_signature import compute_signature
from tests.serve import serve_helpers

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "agents" / "orders.yaml"
SAMPLES = REPO / "samples"
FRAME_S = 0.02
FRAME_ULAW = 160


class ServeProcess(serve_helpers.ServeProcess):
    """`agent-run serve AGENT --emulate SCENARIO --port P -v ARGS` in the background, with Twilio's
    webhook (a form POST) and a wait for finished calls' transcripts."""

    def __init__(self, tmp: Path, scenario: Path, *args: str, env: Mapping[str, str] | None = None,
                 agent: Path = AGENT) -> None:
        super().__init__(tmp, "-v", *args, agent=agent, scenario=scenario, env=env)

    def post(self, path: str, form: Mapping[str, str], headers: Mapping[str, str] | None = None
             ) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=dict(headers or {}),
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def transcripts_done(self, n: int, timeout_s: float = 15.0) -> list[list[dict[str, Any]]]:
        """The first `n` transcript files, once each has its session end record."""
        deadline = time.monotonic() + timeout_s
        while True:
            entries = [[json.loads(line) for line in f.read_text().splitlines() if line.strip()]
                       for f in self.transcript_files()]
            if len(entries) >= n and all(e and e[-1].get("event") == "end" for e in entries[:n]):
                return entries[:n]
            if time.monotonic() > deadline:
                raise AssertionError(f"{n} complete transcripts not written in {timeout_s} s: {entries}\n"
                                     f"{self.stderr()}")
            time.sleep(0.1)


def wav_as_ulaw(path: Path) -> bytes:
    """A mono 16-bit WAV at any rate, resampled to 8 kHz (soxr, anti-aliased) and μ-law encoded."""
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    resampler = Resampler(rate, 8000)
    return ulaw_encode(resampler.process(pcm) + resampler.flush())


@dataclass
class Heard:
    """What the simulated Twilio got from the server."""

    media_frames: int = 0
    played_frames: int = 0  # of them, played out before the call ended or a clear dropped them
    clears: int = 0
    marks: list[str] = field(default_factory=list)  # echoed, in order
    first_media_at: float | None = None
    media_at: list[float] = field(default_factory=list)  # when each media frame arrived
    audio: bytearray = field(default_factory=bytearray)  # decoded 8 kHz PCM of every media frame
    bad: list[str] = field(default_factory=list)  # anything that is not valid Media Streams
    close_code: int | None = None


class TwilioCaller:
    """One simulated call (use `async with`): see the module docstring."""

    def __init__(self, url: str, *, call_sid: str = "CA" + "0" * 30 + "1",
                 parameters: Mapping[str, str] | None = None, auth_token: str | None = None,
                 headers: Sequence[tuple[str, str]] = (), start_delay_s: float = 0.0) -> None:
        self.url = url
        self.start_delay_s = start_delay_s
        self.call_sid = call_sid
        self.stream_sid = "MZ" + call_sid[2:]
        self.parameters = dict(parameters or {})
        self._headers = list(headers)
        if auth_token is not None:
            self._headers.append(("X-Twilio-Signature", compute_signature(auth_token, url)))
        self.heard = Heard()
        self._seq = 0
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._play_until = 0.0
        self._pending_marks: list[tuple[float, str]] = []  # (plays at, name)
        self._queued: list[float] = []  # when each unplayed media frame finishes playing
        self._replies: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> TwilioCaller:
        self._ws = await connect(self.url, additional_headers=self._headers, open_timeout=10, close_timeout=5)
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({"event": "start", "streamSid": self.stream_sid, "start": {
            "accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound"], "customParameters": self.parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._answer_marks())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()

    async def _send(self, msg: dict[str, Any]) -> None:
        assert self._ws is not None
        self._seq += 1
        # Once the server ended the call, Twilio sends nothing more either.
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(json.dumps({**msg, "sequenceNumber": str(self._seq)}))

    async def send_raw(self, frame: str | bytes) -> None:
        """A frame as is (for sending what Twilio never would)."""
        assert self._ws is not None
        await self._ws.send(frame)

    async def speak(self, ulaw: bytes, *, then_silence_s: float = 0.0) -> None:
        """The caller's audio in 20 ms media frames, in real time, then silence (a phone line)."""
        ulaw += bytes([0xFF]) * int(then_silence_s * 8000)
        start = time.monotonic()
        for n, at in enumerate(range(0, len(ulaw), FRAME_ULAW)):
            payload = base64.b64encode(ulaw[at:at + FRAME_ULAW]).decode()
            await self._send({"event": "media", "streamSid": self.stream_sid, "media": {
                "track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20), "payload": payload}})
            await asyncio.sleep(max(0.0, start + (n + 1) * FRAME_S - time.monotonic()))

    async def press(self, digit: str) -> None:
        await self._send({"event": "dtmf", "streamSid": self.stream_sid,
                          "dtmf": {"track": "inbound_track", "digit": digit}})

    async def hang_up(self) -> None:
        await self._send({"event": "stop", "streamSid": self.stream_sid,
                          "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})

    async def wait_for(self, condition: Any, timeout_s: float) -> bool:
        """Poll `condition(heard)` until true; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not condition(self.heard):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def wait_answer_arrived(self, first_timeout_s: float = 25, *, played: bool = False) -> None:
        """Wait for an answer's audio (over 150 frames within `first_timeout_s`), then until it stops
        arriving (no new frame for 1 s); with `played`, also until the simulated player has played
        it all (at most 5 s more). Fails the test, showing what was heard, if a wait runs out."""
        assert await self.wait_for(lambda h: h.media_frames > 150, first_timeout_s), self.heard
        frames = -1
        while frames != self.heard.media_frames:
            frames = self.heard.media_frames
            await asyncio.sleep(1.0)
        if played:
            assert await self.wait_for(lambda h: h.played_frames >= h.media_frames, 5), self.heard

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    self.heard.bad.append("binary frame")
                    continue
                self._on_message(json.loads(message))
        except ConnectionClosed as closed:
            self.heard.close_code = closed.rcvd.code if closed.rcvd is not None else None
        else:
            self.heard.close_code = self._ws.close_code

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind, now = msg.get("event"), time.monotonic()
        if msg.get("streamSid") != self.stream_sid:
            self.heard.bad.append(f"{kind} with streamSid {msg.get('streamSid')!r}")
        if kind == "media":
            ulaw = base64.b64decode(msg["media"]["payload"])
            if len(ulaw) != FRAME_ULAW:
                self.heard.bad.append(f"media frame of {len(ulaw)} bytes")
            self.heard.media_frames += 1
            self.heard.media_at.append(now)
            self.heard.audio += ulaw_decode(ulaw)
            if self.heard.first_media_at is None:
                self.heard.first_media_at = now
            self._play_until = max(self._play_until, now + self.start_delay_s) + len(ulaw) / 8000
            self._queued.append(self._play_until)
        elif kind == "mark":
            self._pending_marks.append((self._play_until, msg["mark"]["name"]))
        elif kind == "clear":
            self.heard.clears += 1
            self.heard.played_frames += sum(1 for t in self._queued if t <= now)
            self._queued.clear()
            self._play_until = now
            for _, name in self._pending_marks:  # Twilio answers the outstanding marks at once
                self.heard.marks.append(name)
                self._replies.append(asyncio.get_running_loop().create_task(
                    self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})))
            self._pending_marks.clear()
        else:
            self.heard.bad.append(f"unexpected event {kind!r}")

    async def _answer_marks(self) -> None:
        while True:
            now = time.monotonic()
            played = [t for t in self._queued if t <= now]
            self.heard.played_frames += len(played)
            self._queued = [t for t in self._queued if t > now]
            while self._pending_marks and self._pending_marks[0][0] <= now:
                _, name = self._pending_marks.pop(0)
                self.heard.marks.append(name)
                await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
            await asyncio.sleep(0.01)


def rms(pcm: bytes | bytearray) -> float:
    x = np.frombuffer(bytes(pcm), "<i2").astype(float)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0
