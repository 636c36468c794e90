"""`when:` scenarios end to end. `agent-run emulate --scenario FILE` as a real process, reached by
the real SDK over TLS through the exports it prints: typed (interactive) USER text picks the
matching turn, and a regex capture lands in the tool's input. The runner's CLI speaking to
`--emulate`: speech has no transcript without ASR, so the turns without `when:` play, and the
emulator says why once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_sdk_bedrock_runtime import models
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from e2e_helpers import ORDERS, SAMPLES, Run, base_env
from emulate_process import EmulateProcess, exported
from smithy_http.aio.crt import AWSCRTHTTPClient

from tests.emulator.fakes import (
    audio_start,
    content_end,
    opening,
    text_input,
    text_start,
    tool_result,
    tool_start,
)
from tests.emulator.test_nova_sdk import NOVA2, Client, run, shutdown

SCENARIO = """\
turns:
  - when: {regex: 'order (?:number )?(?P<order_id>\\d+)'}
    assistant:
      - tool: trackOrderTool
        input: {orderId: "{{ match.order_id }}"}
      - say: "Order {{ match.order_id }} is {{ tool_result.status }}."
  - when: opening hours
    assistant:
      - say: We open at nine.
fallback:
  - say: "Sorry, I didn't catch that."
settings: {speed: 50}
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulateProcess, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("when")
    (tmp / "when.yaml").write_text(SCENARIO)
    with EmulateProcess(["--port", "0", "--time-limit", "30", "--scenario", tmp / "when.yaml"],
                        tmp / "emulator.log", base_env()) as process:
        yield process, exported(process.wait_ready())


def finals(nova: Client) -> list[str]:
    """The assistant's FINAL texts (each is sent SPECULATIVE first, then FINAL)."""
    final = {b["contentId"] for b in nova.bodies("contentStart")
             if b["role"] == "ASSISTANT" and b["type"] == "TEXT" and "FINAL" in b["additionalModelFields"]}
    return [b["content"] for b in nova.bodies("textOutput") if b["contentId"] in final]


async def type_text(nova: Client, name: str, text: str) -> None:
    await nova.send(text_start(name, "USER", interactive=True), text_input(name, text), content_end(name))


async def conversation(env: dict[str, str], tool_inputs: list[dict[str, str]]) -> Client:
    config = await AsyncBedrockRuntimeConfig.resolve(
        transport=AWSCRTHTTPClient(), aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client = AsyncBedrockRuntimeClient(config=config)
    stream = await client.invoke_model_with_bidirectional_stream(
        models.InvokeModelWithBidirectionalStreamOperationInput(model_id=NOVA2))
    nova = Client(stream)
    async with asyncio.TaskGroup() as tasks:
        reader = tasks.create_task(nova.read())
        try:
            await nova.send(*opening(tools=("trackOrderTool",)), audio_start())
            await type_text(nova, "t1", "What are your OPENING hours?")
            await nova.wait_for(lambda: finals(nova) == ["We open at nine."])
            for name, order, status in (("t2", "4711", "shipped"), ("t3", "12", "lost")):
                await type_text(nova, name, f"Hi! Where is order number {order}, please?")
                await nova.wait_for(lambda: len(nova.bodies("toolUse")) == len(tool_inputs) + 1)
                tool_use = nova.bodies("toolUse")[-1]
                tool_inputs.append(json.loads(tool_use["content"]))
                await nova.send(tool_start(f"r{name}", tool_use["toolUseId"]),
                                tool_result(f"r{name}", json.dumps({"status": status})),
                                content_end(f"r{name}"))
                await nova.wait_for(lambda: finals(nova)[-1:] == [f"Order {order} is {status}."])  # noqa: B023
            await type_text(nova, "t4", "Blue bananas.")
            await nova.wait_for(lambda: finals(nova)[-1:] == ["Sorry, I didn't catch that."])
            await shutdown(nova)
        finally:
            await nova.close()
            await asyncio.wait({reader}, timeout=5)
            reader.cancel()
    await client.close()
    return nova


def test_typed_text_picks_when_turns_and_captures_reach_the_tool_input(
        emulator: tuple[EmulateProcess, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    process, env = emulator
    for name, value in env.items():  # the endpoint and the CA, as a client's shell would have them
        monkeypatch.setenv(name, value)
    tool_inputs: list[dict[str, str]] = []
    nova = run(conversation(env, tool_inputs))
    assert nova.error is None
    assert tool_inputs == [{"orderId": "4711"}, {"orderId": "12"}]
    assert finals(nova) == ["We open at nine.", "Order 4711 is shipped.", "Order 12 is lost.",
                            "Sorry, I didn't catch that."]
    # The typed text is the USER transcript, as Nova sends it back.
    assert nova.texts("USER") == ["What are your OPENING hours?", "Hi! Where is order number 4711, please?",
                                  "Hi! Where is order number 12, please?", "Blue bananas."]
    log = process.text()
    assert "turn 2: turns[0] answers (regex 'order (?:number )?(?P<order_id>\\\\d+)' matched)" in log, log
    assert "turn 4: fallback answers" in log, log


SPEECH_SCENARIO = """\
turns:
  - when: {regex: 'order (?P<order_id>\\d+)'}
    assistant:
      - tool: trackOrderTool
        input: {orderId: "{{ match.order_id }}"}
      - say: "Matched: {{ tool_result.orderStatus }}."
  - user: Where is my order 12345?
    assistant:
      - tool: trackOrderTool
        input: {orderId: "12345"}
      - say: "In order: {{ tool_result.orderStatus }}."
fallback:
  - say: "Sorry, I didn't catch that."
settings: {speed: 8, speech_end_ms: 500}
"""


def test_speech_without_asr_plays_the_turns_without_when_and_says_why_once(tmp_path: Path) -> None:
    (tmp_path / "when.yaml").write_text(SPEECH_SCENARIO)
    transcript = tmp_path / "t.jsonl"
    run = Run([ORDERS, "--emulate", tmp_path / "when.yaml", "--input", SAMPLES / "where_is_my_order.wav",
               "--output", tmp_path / "o.wav", "--transcript", transcript, "--idle-exit", "1",
               "--time-limit", "30"], transcript=transcript)
    try:
        done = run.finish()
    finally:
        run.kill()
    assert done.returncode == 0, done.describe()
    # The in-order turn's `user:` is what the model "heard"; the real tool handler ran.
    assert [e["text"] for e in done.entries("user")] == ["Where is my order 12345?"], done.describe()
    assert [e["input"] for e in done.entries("tool_call")] == [{"orderId": "12345"}]
    assert [e["text"] for e in done.entries("assistant")] == ["In order: Delivered."], done.describe()
    assert done.stderr.count("install the `asr` extra") == 1, done.describe()
