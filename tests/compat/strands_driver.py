"""strands' BidiAgent (Nova Sonic model) asks one spoken question with one tool, against whatever
endpoint the environment names. Run with the strands compat venv's python (tests/compat/venvs.py).

strands builds `https://bedrock-runtime.{region}.amazonaws.com` itself and has no endpoint
setting, so the one change made to it is in `_point_at_endpoint`: the endpoint it resolves its
SDK config with becomes AWS_ENDPOINT_URL_BEDROCK_RUNTIME (from `agent-run emulate`'s exports).
Credentials come from its own chain (boto3: the exported AWS_ACCESS_KEY_ID/SECRET), the CA from
SSL_CERT_FILE. Prints one JSON object of what the client saw; exit 1 with one line on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import wave
from pathlib import Path
from typing import Any

import strands.bidi.models.bedrock as strands_bedrock
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from driver_main import report
from strands import tool
from strands.bidi import BidiAgent
from strands.bidi.models.bedrock import BedrockNovaSonicModel
from strands.bidi.types.media import AudioDelta

CHUNK_BYTES = 1024 * 2  # 64 ms of 16 kHz 16-bit mono, as a microphone buffer
TOOL_CALLS: list[dict[str, Any]] = []
TOOL_RESULT = {"orderNumber": "12345", "orderStatus": "Shipped"}


def _point_at_endpoint() -> None:
    """strands hard-codes the regional endpoint; resolve its config with the exported one."""
    resolve = AsyncBedrockRuntimeConfig.resolve

    class _Config:
        @staticmethod
        async def resolve(**overrides: Any) -> Any:
            endpoint = os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]
            return await resolve(**{**overrides, "endpoint_uri": endpoint})

    strands_bedrock.AsyncBedrockRuntimeConfig = _Config  # type: ignore[assignment,misc]


@tool
def trackOrderTool(orderId: str) -> dict[str, Any]:  # the scenario's tool name
    """Look up the status of an order by its id."""
    TOOL_CALLS.append({"orderId": orderId})
    return TOOL_RESULT


async def converse(args: argparse.Namespace) -> dict[str, Any]:
    with wave.open(str(args.wav), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    seen: dict[str, Any] = {"tool_calls": TOOL_CALLS, "assistant_text": [], "user_text": [],
                            "audio_bytes": 0, "audio_bytes_after_tool": 0, "event_types": []}
    answered = asyncio.Event()
    model = BedrockNovaSonicModel(model_id=args.model, region=args.region)
    agent = BidiAgent(model=model, tools=[trackOrderTool], system_prompt="You help customers with orders.")

    async def listen() -> None:
        async for event in agent.receive():
            kind = event.get("type", type(event).__name__)
            if not seen["event_types"] or seen["event_types"][-1] != kind:
                seen["event_types"].append(kind)
            if kind == "bidi_audio_delta":
                size = len(base64.b64decode(event["audio"]))
                seen["audio_bytes"] += size
                if TOOL_CALLS:
                    seen["audio_bytes_after_tool"] += size
            elif kind == "bidi_transcript_block":
                key = "assistant_text" if event["role"] == "assistant" else "user_text"
                seen[key].append(event["transcript"])
                if key == "assistant_text" and TOOL_CALLS and seen["audio_bytes_after_tool"]:
                    answered.set()
            elif kind == "bidi_connection_stop":
                answered.set()

    async def speak() -> None:
        for offset in range(0, len(pcm), CHUNK_BYTES):
            await agent.send(AudioDelta(format="pcm", source={"bytes": pcm[offset:offset + CHUNK_BYTES]}))
            await asyncio.sleep(0.016)
        while not answered.is_set():  # an open microphone in a quiet room
            await agent.send(AudioDelta(format="pcm", source={"bytes": bytes(CHUNK_BYTES)}))
            await asyncio.sleep(0.016)

    async with agent:
        listener = asyncio.create_task(listen())
        speaker = asyncio.create_task(speak())
        try:
            await asyncio.wait({listener, speaker, asyncio.create_task(answered.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
            for task in (listener, speaker):
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            answered.set()
            speaker.cancel()
            listener.cancel()
            await asyncio.gather(speaker, listener, return_exceptions=True)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", type=Path, required=True)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--model", default="amazon.nova-2-sonic-v1:0")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--unmodified", action="store_true",
                        help="use strands as it is (its regional endpoint: the real-hostname recipe)")
    args = parser.parse_args()
    if not args.unmodified:
        _point_at_endpoint()
    return report(asyncio.wait_for(converse(args), args.timeout))


if __name__ == "__main__":
    sys.exit(main())
