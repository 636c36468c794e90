"""Test helpers for the emulator's behaviour: input event builders, PCM generators, a synchronous
brain driver with a stepped clock, and an in-memory EmulatorStream for the async adapter."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.emulator.api import StreamRequest
from runner.emulator.brain import (
    Action,
    Brain,
    BrainSettings,
    EndStream,
    ResetStream,
    Script,
    SendEvent,
    SendException,
    SendRaw,
)
from runner.emulator.scenario import Scenario

V2 = "amazon.nova-2-sonic-v1:0"
V1 = "amazon.nova-sonic-v1:0"
PROMPT = "p1"


# -- input events ---------------------------------------------------------------------------------

def ev(name: str, **body: Any) -> dict[str, Any]:
    return {"event": {name: body}}


def session_start(**extra: Any) -> dict[str, Any]:
    return ev("sessionStart", inferenceConfiguration={"maxTokens": 1024, "topP": 0.9, "temperature": 0.7},
              **extra)


def prompt_start(voice: str = "matthew", rate: int = 16000, tools: tuple[str, ...] = (),
                 schema_json: Any = '{"type": "object"}') -> dict[str, Any]:
    body: dict[str, Any] = {
        "promptName": PROMPT, "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {"mediaType": "audio/lpcm", "sampleRateHertz": rate,
                                     "sampleSizeBits": 16, "channelCount": 1, "voiceId": voice,
                                     "encoding": "base64", "audioType": "SPEECH"}}
    if tools:
        body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        body["toolConfiguration"] = {"tools": [
            {"toolSpec": {"name": t, "description": f"The {t} tool.", "inputSchema": {"json": schema_json}}}
            for t in tools]}
    return ev("promptStart", **body)


def text_start(name: str, role: str, interactive: bool = False) -> dict[str, Any]:
    return ev("contentStart", promptName=PROMPT, contentName=name, type="TEXT", interactive=interactive,
              role=role, textInputConfiguration={"mediaType": "text/plain"})


def audio_start(name: str = "audio", rate: int = 16000) -> dict[str, Any]:
    return ev("contentStart", promptName=PROMPT, contentName=name, type="AUDIO", interactive=True,
              role="USER", audioInputConfiguration={
                  "mediaType": "audio/lpcm", "sampleRateHertz": rate, "sampleSizeBits": 16,
                  "channelCount": 1, "audioType": "SPEECH", "encoding": "base64"})


def tool_start(name: str, tool_use_id: str) -> dict[str, Any]:
    return ev("contentStart", promptName=PROMPT, contentName=name, type="TOOL", interactive=False,
              role="TOOL", toolResultInputConfiguration={
                  "toolUseId": tool_use_id, "type": "TEXT",
                  "textInputConfiguration": {"mediaType": "text/plain"}})


def text_input(name: str, content: str) -> dict[str, Any]:
    return ev("textInput", promptName=PROMPT, contentName=name, content=content)


def audio_input(pcm: bytes, name: str = "audio") -> dict[str, Any]:
    return ev("audioInput", promptName=PROMPT, contentName=name, content=base64.b64encode(pcm).decode())


def tool_result(name: str, content: str) -> dict[str, Any]:
    return ev("toolResult", promptName=PROMPT, contentName=name, content=content)


def content_end(name: str) -> dict[str, Any]:
    return ev("contentEnd", promptName=PROMPT, contentName=name)


def opening(model_voice: str = "matthew", tools: tuple[str, ...] = (),
            rate: int = 16000) -> list[dict[str, Any]]:
    """sessionStart, promptStart and the SYSTEM block."""
    return [session_start(), prompt_start(model_voice, tools=tools, rate=rate),
            text_start("sys", "SYSTEM"), text_input("sys", "You are a test."), content_end("sys")]


def raw(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event).encode()


# -- audio ----------------------------------------------------------------------------------------

def tone(seconds: float, rate: int = 16000, dbfs: float = -12.0, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    amp = 32767 * 10 ** (dbfs / 20) * np.sqrt(2)
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(2 * int(seconds * rate))


def chunks(pcm: bytes, rate: int = 16000, ms: int = 32) -> list[bytes]:
    step = rate * ms // 1000 * 2
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


def fake_speech(text: str, rate: int) -> bytes:
    """Deterministic 'speech' for brain tests: 50 ms of tone per character."""
    return tone(0.05 * len(text), rate)


# -- synchronous brain driver ---------------------------------------------------------------------

@dataclass
class BrainDriver:
    """Drives a Brain with a stepped clock and collects what it sends (outputs as event dicts)."""

    brain: Brain
    now: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    others: list[Action] = field(default_factory=list)

    @classmethod
    def make(cls, scenario: Scenario | None = None, model_id: str = V2,
             script: Script | None = None, **settings: Any) -> BrainDriver:
        counter = iter(range(1, 1_000_000))
        brain = Brain(model_id=model_id, script=script or Script(scenario),
                      settings=BrainSettings(**settings), now=0.0, new_id=lambda: f"id{next(counter)}")
        return cls(brain)

    def send(self, *events: Mapping[str, Any] | bytes) -> None:
        for event in events:
            self.brain.receive(event if isinstance(event, bytes) else raw(event), self.now)
            self.pump()

    def pump(self) -> None:
        while True:
            for action in self.brain.poll(self.now):
                if isinstance(action, SendEvent):
                    self.events.append(dict(action.event))
                else:
                    self.others.append(action)
            if self.brain.speech_request is None:
                return
            text, rate = self.brain.speech_request
            self.brain.provide_speech(fake_speech(text, rate), self.now)

    def advance(self, seconds: float, step: float = 0.01) -> None:
        """Let `seconds` pass, polling at every deadline (or `step`)."""
        end = self.now + seconds
        while self.now < end and not self.brain.done:
            self.now = min(end, max(self.now + 1e-6, min(self.brain.next_deadline(), self.now + step)))
            self.pump()

    def stream_audio(self, pcm: bytes, rate: int = 16000, ms: int = 32, *, realtime: bool = True) -> None:
        """Send `pcm` as audioInput frames, advancing the clock by each frame's duration."""
        for piece in chunks(pcm, rate, ms):
            self.send(audio_input(piece))
            if realtime:
                self.advance(len(piece) / 2 / rate)

    def names(self) -> list[str]:
        return [next(iter(e["event"])) for e in self.events]

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [e["event"][name] for e in self.events if name in e["event"]]

    def exception(self) -> SendException | None:
        found = [a for a in self.others if isinstance(a, SendException)]
        return found[0] if found else None

    def ended(self) -> bool:
        return any(isinstance(a, EndStream | ResetStream) for a in self.others)

    def raw_sent(self) -> bytes:
        return b"".join(a.data for a in self.others if isinstance(a, SendRaw))


# -- in-memory EmulatorStream for the async adapter -----------------------------------------------

class MemoryStream:
    """An EmulatorStream whose client side is driven by the test."""

    def __init__(self, model_id: str = V2, request_id: str = "req-1") -> None:
        self.request = StreamRequest(model_id=model_id, request_id=request_id, sequence=1)
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.events: list[dict[str, Any]] = []
        self.exceptions: list[tuple[str, str]] = []
        self.raw: bytes = b""
        self.was_reset = False
        self._closed = False
        self.output = asyncio.Event()

    async def receive(self) -> bytes | None:
        if self._closed:
            return None
        return await self.inbox.get()

    async def send_event(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))
        self.output.set()

    async def send_exception(self, kind: str, message: str) -> None:
        self.exceptions.append((kind, message))
        self._closed = True
        self.output.set()

    async def send_raw(self, data: bytes) -> None:
        self.raw += data

    async def reset(self) -> None:
        self.was_reset = True
        self._closed = True
        self.inbox.put_nowait(None)

    async def end(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def client_send(self, event: Mapping[str, Any]) -> None:
        self.inbox.put_nowait(raw(event))

    def client_close(self) -> None:
        self.inbox.put_nowait(None)

    def names(self) -> list[str]:
        return [next(iter(e["event"])) for e in self.events]
