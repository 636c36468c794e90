"""Emulator wire-layer cost: server CPU per input and per output event, and real-time capacity.

The emulator runs in this process; the real SDK client runs in a child process (this script with
--client), so `time.process_time()` here counts only the emulator (TLS, HTTP/2, event-stream
framing, SigV4 chunk verification, base64/JSON unwrapping, the handler) and no client work.
The emulator is one asyncio thread, so one core is its ceiling.

    .venv/bin/python bench/bench_emulator_wire.py [--events 2000] [--sessions 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
import time
from typing import Any

from runner.emulator.api import EmulatorStream, Rejection, StreamRequest
from runner.emulator.server import Emulator

PCM_BYTES = 1024  # 32 ms of 16 kHz 16-bit mono is 1024 B
EVENTS_PER_SECOND = 31.25  # one event per 32 ms chunk
AUDIO = base64.b64encode(bytes(PCM_BYTES)).decode()


def audio_event(name: str) -> dict[str, Any]:
    return {"event": {name: {"promptName": "p", "contentName": "a", "content": AUDIO}}}


class BenchHandler:
    """sink: read everything; burst:N: answer the first event with N audioOutputs; echo: one
    audioOutput per audioInput (what a talking model costs, roughly)."""

    def admit(self, request: StreamRequest) -> Rejection | None:
        return None

    async def handle(self, stream: EmulatorStream) -> None:
        model = stream.request.model_id
        if model.startswith("burst:"):
            await stream.receive()
            for _ in range(int(model.removeprefix("burst:"))):
                await stream.send_event(audio_event("audioOutput"))
        else:
            while (payload := await stream.receive()) is not None:
                if model == "echo":
                    await stream.send_event(audio_event("audioOutput"))
                else:
                    json.loads(payload)  # a model would parse every event
        await stream.end()


# --- client side (child process) ----------------------------------------------------------------


async def client_main(mode: str, events: int, sessions: int, seconds: float) -> dict[str, Any]:
    from aws_sdk_bedrock_runtime import models
    from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
    from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
    from smithy_http.aio.crt import AWSCRTHTTPClient

    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
    config = await AsyncBedrockRuntimeConfig.resolve(
        transport=AWSCRTHTTPClient(),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    client = AsyncBedrockRuntimeClient(config=config)
    body = json.dumps(audio_event("audioInput")).encode()

    def chunk() -> Any:
        return models.InvokeModelWithBidirectionalStreamInputChunk(
            value=models.BidirectionalInputPayloadPart(bytes_=body)
        )

    async def one(model: str, count: int, interval: float) -> tuple[int, float]:
        operation = models.InvokeModelWithBidirectionalStreamOperationInput(model_id=model)
        stream = await client.invoke_model_with_bidirectional_stream(operation)
        received = 0

        async def drain() -> None:
            nonlocal received
            _, receiver = await stream.await_output()
            while await receiver.receive() is not None:
                received += 1

        max_lag = 0.0
        async with asyncio.TaskGroup() as tg:
            tg.create_task(drain())
            start = time.monotonic()
            for i in range(count):
                if interval:
                    lag = time.monotonic() - (start + i * interval)
                    max_lag = max(max_lag, lag)
                    if lag < 0:
                        await asyncio.sleep(-lag)
                await stream.input_stream.send(chunk())
            await stream.input_stream.close()
        return received, max_lag

    started = time.monotonic()
    if mode == "in":
        results = [await one("sink", events, 0)]
    elif mode == "out":
        results = [await one(f"burst:{events}", 1, 0)]
    else:
        count = int(seconds * EVENTS_PER_SECOND)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one("echo", count, 1 / EVENTS_PER_SECOND)) for _ in range(sessions)]
        results = [t.result() for t in tasks]
    wall = time.monotonic() - started
    await client.close()
    return {
        "wall": wall,
        "received": sum(r for r, _ in results),
        "max_lag": max(lag for _, lag in results),
        "client_cpu": time.process_time(),
    }


# --- server side (this process) -----------------------------------------------------------------


async def run_client(emulator: Emulator, *args: str) -> tuple[dict[str, Any], float, float]:
    """Run one client phase; return its report, emulator CPU seconds and wall seconds."""
    env = {**os.environ, **emulator.env()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    # The child needs ~1 s to import the SDK; the idle emulator costs nothing meanwhile.
    cpu0, wall0 = time.process_time(), time.monotonic()
    stdout, _ = await asyncio.wait_for(proc.communicate(), 300)
    return json.loads(stdout), time.process_time() - cpu0, time.monotonic() - wall0


async def server_main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO if args.log else logging.WARNING)
    n = args.events
    async with Emulator(BenchHandler()) as emulator:
        report, cpu, _ = await run_client(emulator, "in", str(n), "1", "0")
        per_in = cpu / n
        print(f"input:  {n} audioInput events ({PCM_BYTES} B PCM): emulator CPU {per_in * 1e6:.0f} µs/ev")
        report, cpu, _ = await run_client(emulator, "out", str(n), "1", "0")
        assert report["received"] == n, report
        per_out = cpu / n
        print(f"output: {n} audioOutput events ({PCM_BYTES} B PCM): emulator CPU {per_out * 1e6:.0f} µs/ev")

        per_session = EVENTS_PER_SECOND * (per_in + per_out)
        print(
            f"one real-time echo session (31.25 in + 31.25 out events/s): {per_session * 100:.2f} % of a core"
            f" → about {int(1 / per_session)} sessions per emulator process (one core)"
        )

        s, secs = args.sessions, args.seconds
        report, cpu, wall = await run_client(emulator, "rt", "0", str(s), str(secs))
        expected = s * int(secs * EVENTS_PER_SECOND)
        print(
            f"verified: {s} concurrent real-time sessions for {secs:.0f} s:"
            f" emulator CPU {cpu / wall * 100:.1f} %"
            f" of a core over {wall:.1f} s (incl. client start-up), {report['received']}/{expected} echoes,"
            f" worst client send lag {report['max_lag'] * 1000:.0f} ms,"
            f" client CPU {report['client_cpu'] / wall * 100:.0f} %"
        )
        print(f"stats: {emulator.stats()}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        mode, events, sessions, seconds = sys.argv[2:6]
        print(json.dumps(asyncio.run(client_main(mode, int(events), int(sessions), float(seconds)))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--log", action="store_true", help="log every event at INFO (as `emulate` does)")
    asyncio.run(server_main(parser.parse_args()))


if __name__ == "__main__":
    main()
