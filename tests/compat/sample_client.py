"""A Nova Sonic client written the way AWS's console sample writes it, on the SDK version this
repository pins: it builds `https://bedrock-runtime.{region}.amazonaws.com` itself and takes its
keys from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). Nothing in it knows about
the emulator except, with `--endpoint`, where to connect.

It asks one spoken question (a 16 kHz WAV) with one tool declared, answers the tool call with a
fixed result, waits for the spoken answer, and prints one JSON object (what it received) on
stdout. Any failure (e.g. the service refusing its signature) is one line on stderr, exit 1.

    python sample_client.py --wav Q.wav --tool trackOrderTool --result '{"orderStatus": "Shipped"}'
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import uuid
import wave
from pathlib import Path
from typing import Any

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
)
from driver_main import report
from smithy_aws_core.identity.environment import EnvironmentCredentialsResolver
from smithy_http.aio.crt import AWSCRTHTTPClient

CHUNK_FRAMES = 1024  # the sample's microphone buffer (64 ms at 16 kHz)


class Conversation:
    def __init__(self, stream: Any, tool_result: str) -> None:
        self.stream = stream
        self.prompt = str(uuid.uuid4())
        self.audio_name = str(uuid.uuid4())
        self.tool_result = tool_result
        self.received: dict[str, Any] = {"tool_uses": [], "assistant_text": [], "user_text": [],
                                         "audio_bytes_after_tool": 0, "audio_bytes": 0, "events": []}
        self.answered = asyncio.Event()
        self._role = ""

    async def send(self, event: dict[str, Any]) -> None:
        chunk = InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=json.dumps({"event": event}).encode()))
        await self.stream.input_stream.send(chunk)

    async def open(self, tool: str) -> None:
        await self.send({"sessionStart": {"inferenceConfiguration": {
            "maxTokens": 1024, "topP": 0.9, "temperature": 0.7}}})
        schema = json.dumps({"type": "object", "properties": {"orderId": {"type": "string"}},
                             "required": ["orderId"]})
        await self.send({"promptStart": {
            "promptName": self.prompt,
            "textOutputConfiguration": {"mediaType": "text/plain"},
            "audioOutputConfiguration": {"mediaType": "audio/lpcm", "sampleRateHertz": 24000,
                                         "sampleSizeBits": 16, "channelCount": 1, "voiceId": "matthew",
                                         "encoding": "base64", "audioType": "SPEECH"},
            "toolUseOutputConfiguration": {"mediaType": "application/json"},
            "toolConfiguration": {"tools": [{"toolSpec": {
                "name": tool, "description": "Looks up an order.", "inputSchema": {"json": schema}}}]},
        }})
        system = str(uuid.uuid4())
        await self.send({"contentStart": {"promptName": self.prompt, "contentName": system, "type": "TEXT",
                                          "interactive": False, "role": "SYSTEM",
                                          "textInputConfiguration": {"mediaType": "text/plain"}}})
        await self.send({"textInput": {"promptName": self.prompt, "contentName": system,
                                       "content": "You are a helpful order assistant."}})
        await self.send({"contentEnd": {"promptName": self.prompt, "contentName": system}})
        await self.send({"contentStart": {
            "promptName": self.prompt, "contentName": self.audio_name, "type": "AUDIO", "interactive": True,
            "role": "USER", "audioInputConfiguration": {
                "mediaType": "audio/lpcm", "sampleRateHertz": 16000, "sampleSizeBits": 16, "channelCount": 1,
                "audioType": "SPEECH", "encoding": "base64"}}})

    async def send_audio(self, pcm: bytes) -> None:
        step = CHUNK_FRAMES * 2
        for offset in range(0, len(pcm), step):
            await self.send({"audioInput": {"promptName": self.prompt, "contentName": self.audio_name,
                                            "content": base64.b64encode(pcm[offset:offset + step]).decode()}})
            await asyncio.sleep(0.016)  # four times real time: a microphone, only faster

    async def keep_listening(self) -> None:
        """Silence, as an open microphone in a quiet room sends, until the answer is complete."""
        while not self.answered.is_set():
            await self.send_audio(bytes(CHUNK_FRAMES * 2))

    async def close(self) -> None:
        await self.send({"contentEnd": {"promptName": self.prompt, "contentName": self.audio_name}})
        await self.send({"promptEnd": {"promptName": self.prompt}})
        await self.send({"sessionEnd": {}})
        await self.stream.input_stream.close()

    async def read(self) -> None:
        _, receiver = await self.stream.await_output()
        while True:
            output = await receiver.receive()
            if output is None:
                return
            event = json.loads(output.value.bytes_)["event"]
            name = next(iter(event))
            self.received["events"].append(name)
            body = event[name]
            if name == "contentStart":
                self._role = body.get("role", "")
            elif name == "textOutput":
                key = "assistant_text" if body.get("role") == "ASSISTANT" else "user_text"
                self.received[key].append(body["content"])
            elif name == "audioOutput":
                size = len(base64.b64decode(body["content"]))
                self.received["audio_bytes"] += size
                if self.received["tool_uses"]:
                    self.received["audio_bytes_after_tool"] += size
            elif name == "toolUse":
                self.received["tool_uses"].append({"name": body["toolName"],
                                                   "input": json.loads(body["content"])})
                await self.answer_tool(body["toolUseId"])
            elif name == "completionEnd" or self._answer_ended(name, body):
                self.answered.set()

    def _answer_ended(self, name: str, body: dict[str, Any]) -> bool:
        """The spoken answer after the tool's result is complete."""
        return (name == "contentEnd" and body.get("stopReason") == "END_TURN" and self._role == "ASSISTANT"
                and self.received["audio_bytes_after_tool"] > 0)

    async def answer_tool(self, tool_use_id: str) -> None:
        name = str(uuid.uuid4())
        await self.send({"contentStart": {
            "promptName": self.prompt, "contentName": name, "interactive": False, "type": "TOOL",
            "role": "TOOL", "toolResultInputConfiguration": {
                "toolUseId": tool_use_id, "type": "TEXT",
                "textInputConfiguration": {"mediaType": "text/plain"}}}})
        await self.send({"toolResult": {"promptName": self.prompt, "contentName": name,
                                        "content": self.tool_result}})
        await self.send({"contentEnd": {"promptName": self.prompt, "contentName": name}})


async def converse(args: argparse.Namespace) -> dict[str, Any]:
    config = await AsyncBedrockRuntimeConfig.resolve(
        endpoint_uri=args.endpoint or f"https://bedrock-runtime.{args.region}.amazonaws.com",
        region=args.region, aws_credentials_identity_resolver=EnvironmentCredentialsResolver(),
        transport=AWSCRTHTTPClient())
    client = AsyncBedrockRuntimeClient(config=config)
    with wave.open(str(args.wav), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    try:
        stream = await client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=args.model))
        conversation = Conversation(stream, args.result)
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(conversation.read())
            await conversation.open(args.tool)
            await conversation.send_audio(pcm)
            listener = tasks.create_task(conversation.keep_listening())
            done, _ = await asyncio.wait({reader, tasks.create_task(conversation.answered.wait())},
                                         return_when=asyncio.FIRST_COMPLETED)
            if reader in done and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            conversation.answered.set()
            await listener
            await conversation.close()
            await asyncio.wait_for(reader, 10)
        return conversation.received
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", type=Path, required=True)
    parser.add_argument("--tool", default="trackOrderTool")
    parser.add_argument("--result", default='{"orderNumber": "12345", "orderStatus": "Shipped"}')
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--model", default="amazon.nova-2-sonic-v1:0")
    parser.add_argument("--endpoint", help="connect here instead of the regional Bedrock endpoint")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    async def bounded() -> dict[str, Any]:
        # awscrt reports writes racing a finished stream as never-retrieved task errors: noise.
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        return await asyncio.wait_for(converse(args), args.timeout)

    return report(bounded())


if __name__ == "__main__":
    sys.exit(main())
