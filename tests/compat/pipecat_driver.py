"""pipecat's AWSNovaSonicLLMService, in a pipeline, asks one spoken question with one tool, against
whatever endpoint the environment names. Run with the pipecat compat venv's python
(tests/compat/venvs.py).

pipecat builds `https://bedrock-runtime.{region}.amazonaws.com` itself; the one change made to it
is the subclass below, which moves the client it creates to AWS_ENDPOINT_URL_BEDROCK_RUNTIME (from
`agent-run emulate`'s exports). Keys and region are passed the way pipecat's examples pass them
(from the environment), the CA comes from SSL_CERT_FILE. Prints one JSON object of what the client
saw; exit 1 with one line on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any

from driver_main import report
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMRunFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.aws.nova_sonic.llm import AWSNovaSonicLLMService
from pipecat.services.llm_service import FunctionCallParams
from pipecat.workers.runner import WorkerRunner

CHUNK_BYTES = 320 * 2  # 20 ms of 16 kHz 16-bit mono: a transport's usual audio frame
TOOL_RESULT = {"orderNumber": "12345", "orderStatus": "Shipped"}


class EmulatedNovaSonic(AWSNovaSonicLLMService):
    """The one change to pipecat: its client connects where the emulator's exports say."""

    def create_client(self) -> Any:
        client = super().create_client()
        client._config.endpoint_uri = os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]
        return client


class Recorder(FrameProcessor):
    """The end of the pipeline: remembers what the service produced."""

    def __init__(self, seen: dict[str, Any], answered: asyncio.Event) -> None:
        super().__init__()
        self.seen = seen
        self.answered = answered

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        seen = self.seen
        if isinstance(frame, TTSAudioRawFrame):
            seen["audio_bytes"] += len(frame.audio)
            if seen["tool_calls"]:
                seen["audio_bytes_after_tool"] += len(frame.audio)
        elif isinstance(frame, TTSTextFrame | LLMTextFrame):
            seen["assistant_text"].append(frame.text)
        elif isinstance(frame, ErrorFrame):
            seen["errors"].append(str(frame.error))
            self.answered.set()
        elif isinstance(frame, LLMFullResponseEndFrame) and seen["audio_bytes_after_tool"]:
            self.answered.set()
        await self.push_frame(frame, direction)


async def converse(args: argparse.Namespace) -> dict[str, Any]:
    with wave.open(str(args.wav), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    seen: dict[str, Any] = {"tool_calls": [], "assistant_text": [], "errors": [],
                            "audio_bytes": 0, "audio_bytes_after_tool": 0}
    answered = asyncio.Event()

    async def track_order(params: FunctionCallParams) -> None:
        seen["tool_calls"].append(dict(params.arguments))
        await params.result_callback(TOOL_RESULT)

    service = AWSNovaSonicLLMService if args.unmodified else EmulatedNovaSonic
    llm = service(
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"], secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_REGION", "us-east-1"),
        settings=AWSNovaSonicLLMService.Settings(
            system_instruction="You help customers with their orders.",
            **({"model": args.model} if args.model else {})),
        tools=ToolsSchema(standard_tools=[FunctionSchema(
            name="trackOrderTool", description="Look up the status of an order by its id.",
            properties={"orderId": {"type": "string"}}, required=["orderId"])]))
    llm.register_function("trackOrderTool", track_order)
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(context)
    pipeline = Pipeline([aggregators.user(), llm, Recorder(seen, answered), aggregators.assistant()])
    params = PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=24000)
    task = PipelineWorker(pipeline, params=params, idle_timeout_secs=None, enable_rtvi=False)

    async def speak() -> None:
        await task.queue_frames([LLMRunFrame()])
        silence = bytes(CHUNK_BYTES)
        offset = 0
        while not answered.is_set():  # the question, then an open microphone in a quiet room
            chunk = pcm[offset:offset + CHUNK_BYTES] if offset < len(pcm) else silence
            offset += CHUNK_BYTES
            await task.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=16000, num_channels=1))
            await asyncio.sleep(0.005)  # four times real time: a microphone, only faster
        await task.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    started = time.monotonic()
    await asyncio.gather(runner.run(), speak())
    seen["seconds"] = round(time.monotonic() - started, 2)
    if seen["errors"]:
        raise RuntimeError(f"pipecat reported: {seen['errors']}")
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", type=Path, required=True)
    parser.add_argument("--model", help="model id (default: pipecat's own default)")
    parser.add_argument("--unmodified", action="store_true",
                        help="use pipecat as it is (its regional endpoint: the real-hostname recipe)")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    return report(asyncio.wait_for(converse(args), args.timeout))


if __name__ == "__main__":
    sys.exit(main())
