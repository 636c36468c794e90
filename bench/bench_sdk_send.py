"""CPU per chunk event of the SDK's event publisher against the runner's send fast path
(runner/transports/sdk_send.py), in this process, with no network: the frames go to a writer that
drops them, so the figures are serialize + sign + frame (+ the identity lookup) only.

Both send through real SDK objects as a stream builds them: the RestJson1 protocol's JSON codec, an
AsyncEventSigner seeded like a request's, and the default credentials chain (from the environment,
as the runner resolves it). Each event is a 32 ms audioInput (1024 B of PCM), the runner's chunk.

  burst   N events back to back (warm caches), alternating SDK / fast rounds: median µs per event
  paced   one send every 32 ms, as in a real-time session (cold caches), variants in turn: median
  and for each: the fast path inside `asyncio.timeout` (the bound BedrockStream.send had on every
  send) and inside bounded_if_suspends (a timer only once a send suspends, which these never do)

    PYTHONPATH=. .venv/bin/python bench/bench_sdk_send.py [--quick] [--events 3000] [--rounds 3]
        [--paced 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_signers import AsyncEventSigner
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_core.identity.chain import IdentityChain
from smithy_aws_event_stream.aio import AWSEventPublisher, SigningConfig
from smithy_aws_event_stream.events import EventHeaderEncoder

from runner.transports.bedrock import _chunk
from runner.transports.sdk_send import FastChunkSender, attach, bounded_if_suspends

PAYLOAD = json.dumps({"event": {"audioInput": {
    "promptName": "0f6a3c1e-5b7d-4c2a-9e8f-1a2b3c4d5e6f",
    "contentName": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "content": base64.b64encode(os.urandom(1024)).decode()}}}).encode()


class Drop:
    async def write(self, data: bytes) -> None:
        pass


async def publisher() -> AWSEventPublisher[Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCH")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    config = await AsyncBedrockRuntimeConfig.resolve(region="us-east-1")
    await config.transport.close()  # the default (aiohttp) transport: only the codec is used here
    chain = await IdentityChain.create(AWSCredentialsIdentity, region_override="us-east-1")
    signing = SigningConfig(
        signer=AsyncEventSigner(initial_signature=b"a" * 64, event_encoder_cls=EventHeaderEncoder),
        signing_properties={"region": "us-east-1", "service": "bedrock"},
        identity_resolver=chain, identity_properties={})  # type: ignore[arg-type]
    return AWSEventPublisher(payload_codec=config.protocol.payload_codec, async_writer=Drop(),
                             signing_config=signing)


async def burst(send: Callable[[], Awaitable[None]], events: int) -> float:
    """Thread CPU µs per send, `events` sends back to back."""
    start = time.thread_time_ns()
    for _ in range(events):
        await send()
    return (time.thread_time_ns() - start) / events / 1000


async def paced(sends: dict[str, Callable[[], Awaitable[None]]], events: int) -> dict[str, float]:
    """Median thread CPU µs per send, each send 32 ms after the last (of any variant, in turn)."""
    samples: dict[str, list[float]] = {name: [] for name in sends}
    for _ in range(events):
        for name, send in sends.items():
            await asyncio.sleep(0.032)
            start = time.thread_time_ns()
            await send()
            samples[name].append((time.thread_time_ns() - start) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


async def main(args: argparse.Namespace) -> None:
    pub = await publisher()
    fast = await attach(pub, _chunk)
    assert isinstance(fast, FastChunkSender), "the fast path did not attach (see the debug log)"
    fast_sender: FastChunkSender = fast

    async def sdk() -> None:
        await pub.send(_chunk(PAYLOAD))

    async def quick() -> None:
        await fast_sender.send(PAYLOAD)

    async def timed() -> None:
        async with asyncio.timeout(5):
            await fast_sender.send(PAYLOAD)

    async def bounded() -> None:
        await bounded_if_suspends(fast_sender.send(PAYLOAD), 5)

    sends = {"sdk": sdk, "fast": quick, "timeout": timed, "bounded": bounded}
    rounds: dict[str, list[float]] = {name: [] for name in sends}
    for _ in range(args.rounds):
        for name, send in sends.items():
            rounds[name].append(await burst(send, args.events))
    warm = {name: statistics.median(values) for name, values in rounds.items()}
    cold = await paced(sends, args.paced)
    assert fast_sender.fast_sends > 0
    print(f"audioInput event: {len(PAYLOAD)} B of JSON (1024 B PCM); burst {args.events} events x "
          f"{args.rounds} rounds; paced {args.paced} events per variant, 32 ms apart")
    for label, figures in (("burst", warm), ("paced", cold)):
        print(f"{label}  SDK publisher.send   : {figures['sdk']:7.1f} µs/event")
        print(f"{label}  fast path            : {figures['fast']:7.1f} µs/event  "
              f"(x{figures['fast'] / figures['sdk']:.2f})")
        print(f"{label}  + asyncio.timeout    : {figures['timeout']:7.1f} µs/event")
        print(f"{label}  + bounded_if_suspends: {figures['bounded']:7.1f} µs/event")
    print(f"at 31.25 events/s (paced): SDK {cold['sdk'] * 31.25 / 1e4:.2f} % of a core, "
          f"fast path {cold['fast'] * 31.25 / 1e4:.2f} %")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI: fewer events and rounds")
    parser.add_argument("--events", type=int, default=3000, help="events per burst round")
    parser.add_argument("--rounds", type=int, default=3, help="burst rounds per variant (median)")
    parser.add_argument("--paced", type=int, default=100, help="paced events (32 ms apart) per variant")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.events, arguments.rounds, arguments.paced = 300, 1, 20
    asyncio.run(main(arguments))
