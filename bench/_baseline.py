"""The baseline of bench_runner.py: a Nova Sonic client written the way AWS's sample scripts are
(nova_sonic_simple.py / nova_sonic_tool_use.py, as described in /work/shared/seeds/):

- the SDK used directly, events built as JSON strings and awaited one by one;
- the microphone read in CHUNK_SIZE = 1024-frame chunks (64 ms at 16 kHz), each sent at once;
- ONE unbounded asyncio.Queue of decoded output audio;
- a player task that takes a chunk from the queue and writes it to the device in 1024-frame
  pieces, each a blocking `stream.write()` run in the default thread pool;
- barge-in: the response loop sets a flag when a textOutput carries `{ "interrupted" : true }`
  (the sample looks only at that form); the player, at its next loop, clears the queue and sleeps
  50 ms. Nothing already handed to the device is flushed (no abort/stop of the stream);
- tool use: the toolUse is remembered, and when its TOOL contentEnd arrives the tool function is
  called inline in the response loop, then contentStart/toolResult/contentEnd are sent.

`BlockingDevice` models a PortAudio output stream opened with frames_per_buffer=1024 and written
with blocking writes: the host buffer holds `capacity_frames` (default 2 x 1024: PortAudio's
ALSA/PulseAudio back-ends run at least two periods of frames_per_buffer), `write()` returns once
the last frame fits in it, and the device drains it at the sample rate. A frame written at time t
plays at max(t, end of what is already buffered). That is the part of the audio a barge-in cannot
take back in the baseline.

Bench instrumentation (timestamps) is marked `# bench:`; everything else is the sample's logic.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from _common import chunk, open_sdk_stream

CHUNK_SIZE = 1024  # frames, as the samples' CHUNK_SIZE


class BlockingDevice:
    """A PortAudio-like blocking output stream: bounded host buffer drained in real time."""

    def __init__(self, rate: int, capacity_frames: int = 2 * CHUNK_SIZE) -> None:
        self.rate = rate
        self.capacity_s = capacity_frames / rate
        self._end = 0.0  # when the last buffered frame finishes playing
        self._lock = threading.Lock()
        # bench: (start, end) of every write on the device timeline
        self.played: list[tuple[float, float]] = []

    def write(self, pcm: bytes) -> tuple[float, float]:
        duration = len(pcm) / 2 / self.rate
        while True:
            with self._lock:
                now = time.monotonic()
                end = max(self._end, now)
                room_at = end + duration - self.capacity_s
                if room_at <= now:
                    self._end = end + duration
                    self.played.append((end, self._end))
                    return end, self._end
            time.sleep(room_at - now)  # blocks like Pa_WriteStream until the frames fit


@dataclass
class BaselineRecord:
    # bench: measurement points
    audio_decoded: dict[int, float] = field(default_factory=dict)   # seq -> decode time
    audio_started: dict[int, float] = field(default_factory=dict)   # seq -> first sample plays
    idle_chunks: set[int] = field(default_factory=set)              # seq written to an idle device
    signals: list[float] = field(default_factory=list)              # first interruption signal
    tool_decoded: dict[str, float] = field(default_factory=dict)
    tool_started: dict[str, float] = field(default_factory=dict)
    tool_returned: dict[str, float] = field(default_factory=dict)
    tool_sent: dict[str, float] = field(default_factory=dict)


class SampleStyleClient:
    """One session, sample style. `run(seconds)` streams `mic_pcm` (then silence) in real time."""

    def __init__(self, client: Any, model_id: str, *, system_prompt: str, voice: str,
                 tools: Mapping[str, tuple[Callable[..., Any], Mapping[str, Any], str]],
                 out_rate: int, device: BlockingDevice, mic_chunk_frames: int = CHUNK_SIZE) -> None:
        self.client = client
        # bench: the sample's CHUNK_SIZE, or 512 (32 ms, the runner's) to compare at the same event rate
        self.mic_chunk_frames = mic_chunk_frames
        self.model_id = model_id
        self.system_prompt = system_prompt
        self.voice = voice
        self.tools = tools
        self.out_rate = out_rate
        self.device = device
        self.prompt_name = "baseline-prompt"
        self.audio_content_name = "baseline-audio"
        self.audio_output_queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.barge_in = False
        self.is_active = False
        self.record = BaselineRecord()
        self._seq = 0
        self._tool: dict[str, Any] | None = None
        self._interrupted_blocks: set[str] = set()
        self.stream: Any = None

    async def send_raw_event(self, event: dict[str, Any]) -> None:
        await self.stream.input_stream.send(chunk(json.dumps(event).encode()))

    def _ev(self, name: str, **body: Any) -> dict[str, Any]:
        return {"event": {name: body}}

    async def start_session(self) -> None:
        self.stream = await open_sdk_stream(self.client, self.model_id)
        self.is_active = True
        p = self.prompt_name
        tool_specs = [{"toolSpec": {"name": name, "description": desc,
                                    "inputSchema": {"json": json.dumps(schema)}}}
                      for name, (_, schema, desc) in self.tools.items()]
        await self.send_raw_event(self._ev("sessionStart", inferenceConfiguration={
            "maxTokens": 1024, "topP": 0.9, "temperature": 0.7}))
        await self.send_raw_event(self._ev(
            "promptStart", promptName=p, textOutputConfiguration={"mediaType": "text/plain"},
            audioOutputConfiguration={"mediaType": "audio/lpcm", "sampleRateHertz": self.out_rate,
                                      "sampleSizeBits": 16, "channelCount": 1, "voiceId": self.voice,
                                      "encoding": "base64", "audioType": "SPEECH"},
            toolUseOutputConfiguration={"mediaType": "application/json"},
            toolConfiguration={"tools": tool_specs}))
        await self.send_raw_event(self._ev(
            "contentStart", promptName=p, contentName="sys", type="TEXT", interactive=False, role="SYSTEM",
            textInputConfiguration={"mediaType": "text/plain"}))
        await self.send_raw_event(self._ev("textInput", promptName=p, contentName="sys",
                                           content=self.system_prompt))
        await self.send_raw_event(self._ev("contentEnd", promptName=p, contentName="sys"))
        await self.send_raw_event(self._ev(
            "contentStart", promptName=p, contentName=self.audio_content_name, type="AUDIO",
            interactive=True, role="USER", audioInputConfiguration={
                "mediaType": "audio/lpcm", "sampleRateHertz": 16000, "sampleSizeBits": 16,
                "channelCount": 1, "audioType": "SPEECH", "encoding": "base64"}))

    async def end_session(self) -> None:
        p = self.prompt_name
        self.is_active = False
        await self.send_raw_event(self._ev("contentEnd", promptName=p, contentName=self.audio_content_name))
        await self.send_raw_event(self._ev("promptEnd", promptName=p))
        await self.send_raw_event(self._ev("sessionEnd"))
        await self.stream.input_stream.close()

    async def capture_audio(self, mic_pcm: bytes, seconds: float) -> None:
        """The microphone: 1024-frame chunks in real time (the device paces the samples' read())."""
        step = self.mic_chunk_frames * 2
        period = self.mic_chunk_frames / 16000
        start = time.monotonic()
        for i in range(int(seconds / period)):
            delay = start + i * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pcm = mic_pcm[i * step:(i + 1) * step].ljust(step, b"\0")
            await self.send_raw_event(self._ev(
                "audioInput", promptName=self.prompt_name, contentName=self.audio_content_name,
                content=base64.b64encode(pcm).decode("utf-8")))

    async def process_responses(self) -> None:
        _, receiver = await self.stream.await_output()
        while (item := await receiver.receive()) is not None:
            json_data = json.loads(item.value.bytes_.decode("utf-8"))
            event = json_data.get("event", {})
            now = time.monotonic()  # bench
            if "contentEnd" in event and event["contentEnd"].get("stopReason") == "INTERRUPTED":
                self._signal(event["contentEnd"].get("contentId", ""), now)  # bench: not acted upon
            if "textOutput" in event:
                text_content = event["textOutput"]["content"]
                if '{ "interrupted" : true }' in text_content:
                    self._signal(event["textOutput"].get("contentId", ""), now)  # bench
                    self.barge_in = True
            elif "audioOutput" in event:
                audio_bytes = base64.b64decode(event["audioOutput"]["content"])
                self._seq += 1
                self.record.audio_decoded[self._seq] = time.monotonic()  # bench
                await self.audio_output_queue.put((self._seq, audio_bytes))
            elif "toolUse" in event:
                self._tool = event["toolUse"]
                self.record.tool_decoded[self._tool["toolUseId"]] = now  # bench
            elif "contentEnd" in event and event["contentEnd"].get("type") == "TOOL" and self._tool:
                await self.process_tool_use(self._tool)
                self._tool = None

    def _signal(self, content_id: str, now: float) -> None:
        # bench: the first signal of an interruption (either form), as the runner measures it
        if content_id not in self._interrupted_blocks:
            self._interrupted_blocks.add(content_id)
            if not self.record.signals or now - self.record.signals[-1] > 0.5:
                self.record.signals.append(now)

    async def process_tool_use(self, tool: dict[str, Any]) -> None:
        if not self.is_active:  # bench: the run is ending; its input stream is being closed
            return
        tool_use_id = tool["toolUseId"]
        fn, _, _ = self.tools[tool["toolName"]]
        content = json.loads(tool["content"] or "{}")
        self.record.tool_started[tool_use_id] = time.monotonic()  # bench
        result = fn(**content)
        if asyncio.iscoroutine(result):
            result = await result
        self.record.tool_returned[tool_use_id] = time.monotonic()  # bench
        if not self.is_active:  # bench: the run ended while the tool ran
            return
        p, name = self.prompt_name, f"tool-{tool_use_id}"
        await self.send_raw_event(self._ev(
            "contentStart", promptName=p, contentName=name, interactive=False, type="TOOL", role="TOOL",
            toolResultInputConfiguration={"toolUseId": tool_use_id, "type": "TEXT",
                                          "textInputConfiguration": {"mediaType": "text/plain"}}))
        self.record.tool_sent[tool_use_id] = time.monotonic()  # bench: toolResult handed to the SDK
        await self.send_raw_event(self._ev("toolResult", promptName=p, contentName=name,
                                           content=json.dumps(result)))
        await self.send_raw_event(self._ev("contentEnd", promptName=p, contentName=name))

    async def play_output_audio(self) -> None:
        loop = asyncio.get_running_loop()
        while self.is_active:
            if self.barge_in:
                while not self.audio_output_queue.empty():
                    self.audio_output_queue.get_nowait()
                self.barge_in = False
                await asyncio.sleep(0.05)
                continue
            try:
                seq, audio_data = await asyncio.wait_for(self.audio_output_queue.get(), timeout=0.1)
            except TimeoutError:
                continue
            step = CHUNK_SIZE * 2
            for i in range(0, len(audio_data), step):
                if not self.is_active:
                    break
                idle = self.device.played[-1][1] < time.monotonic() if self.device.played else True  # bench
                start, _ = await loop.run_in_executor(None, self.device.write, audio_data[i:i + step])
                if i == 0:  # bench
                    self.record.audio_started[seq] = start
                    if idle:
                        self.record.idle_chunks.add(seq)
                await asyncio.sleep(0.001)

    async def run(self, mic_pcm: bytes, seconds: float) -> None:
        await self.start_session()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.process_responses())
            player = tg.create_task(self.play_output_audio())
            await self.capture_audio(mic_pcm, seconds)
            await self.end_session()
            player.cancel()
