"""End to end: the real aws-sdk-bedrock-runtime 0.12.0 client (awscrt, HTTP/2, TLS) against
Emulator(NovaHandler(...)).

One emulator serves the module. A router picks a NovaHandler per test from the model id's prefix
("full.amazon.nova-2-sonic-v1:0" → the "full" handler; the rest is a real model id, the way
cross-region profile ids look), so each test gets its own scenario, limits and faults.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aws_sdk_bedrock_runtime import models
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from smithy_aws_event_stream.exceptions import InvalidEventBytes
from smithy_http.aio.crt import AWSCRTHTTPClient

from runner.emulator import speech
from runner.emulator.api import EmulatorStream, Rejection, StreamRequest
from runner.emulator.brain import MODEL_TIMEOUT, THROTTLED
from runner.emulator.nova import NovaConfig, NovaHandler
from runner.emulator.scenario import parse_scenario
from runner.emulator.server import Emulator
from runner.emulator.validation import (
    ASSISTANT_FIRST,
    CHAT_HISTORY_FIRST,
    INPUT_TIMEOUT,
    INVALID_INPUT,
    TOOL_PARSE,
    invalid_voice_message,
)
from tests.emulator.fakes import (
    audio_input,
    audio_start,
    chunks,
    content_end,
    ev,
    opening,
    prompt_start,
    session_start,
    silence,
    text_input,
    text_start,
    tool_result,
    tool_start,
)

NOVA2 = "amazon.nova-2-sonic-v1:0"
ORDER = parse_scenario({"turns": [
    {"user": "Where is my order 12345?", "assistant": [
        {"tool": "trackOrderTool", "input": {"orderId": "12345"}},
        {"say": "Your order {{ tool_result.orderId }} is {{ tool_result.status }}."}]},
]})
STORY = parse_scenario({"turns": [
    {"user": "Tell me a story.", "assistant": [
        {"say": "Once upon a time, in a land far away, there lived a voice assistant who never stopped "
                "talking, no matter how often it was asked to be quiet."}]},
    {"user": "Stop, please.", "assistant": [{"say": "Sorry."}]},
]})

THREE = parse_scenario({"turns": [
    {"user": w, "assistant": [{"say": f"Answer {w}."}]} for w in ("one", "two", "three")]})

HANDLERS: dict[str, Callable[[], NovaHandler]] = {
    "multi": lambda: NovaHandler(NovaConfig(THREE, speed=50.0)),
    # These two check that the scenario's `user:` text stands in for speech: no recognition
    # (tests/asr checks what the emulator hears).
    "full": lambda: NovaHandler(NovaConfig(ORDER, speed=8.0, record_audio=True, asr="none")),
    "barge": lambda: NovaHandler(NovaConfig(STORY, speed=2.0, asr="none")),
    "strict": lambda: NovaHandler(NovaConfig(ORDER, speed=8.0)),
    "idle": lambda: NovaHandler(NovaConfig(input_timeout_s=1.0)),
    "limit": lambda: NovaHandler(NovaConfig(time_limit_s=2.0)),
    "reset": lambda: NovaHandler(NovaConfig(parse_scenario({"faults": {"reset_after_events": 6}}))),
    "throttle": lambda: NovaHandler(NovaConfig(parse_scenario({"faults": {"throttle_connects": 1}}))),
    "streamerr": lambda: NovaHandler(NovaConfig(parse_scenario({"faults": {"stream_error_at_turn": 1}}))),
    "badbytes": lambda: NovaHandler(NovaConfig(parse_scenario({"faults": {"invalid_bytes_at_turn": 1}}))),
}


class Router:
    """A StreamHandler that hands each request to the NovaHandler named by its model id prefix."""

    def __init__(self) -> None:
        self.handlers = {name: make() for name, make in HANDLERS.items()}

    def _pick(self, request: StreamRequest) -> NovaHandler:
        return self.handlers[request.model_id.partition(".")[0]]

    def admit(self, request: StreamRequest) -> Rejection | None:
        return self._pick(request).admit(request)

    async def handle(self, stream: EmulatorStream) -> None:
        await self._pick(stream.request).handle(stream)


@pytest.fixture(scope="module")
def router() -> Router:
    return Router()


@pytest.fixture(scope="module")
def emulator(background_emulator: Callable[[Router], Emulator], router: Router) -> Emulator:
    return background_emulator(router)


@pytest.fixture
def sdk_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    return emulator


@pytest.fixture(scope="module")
def question_pcm() -> bytes:
    """Real espeak-ng speech at 16 kHz, made once for the module."""
    pcm, rate = speech.espeak_wav("Where is my order one two three four five?")
    return speech.resample(pcm, rate, 16000)


# -- a small SDK client ---------------------------------------------------------------------------

class Client:
    """One SDK stream: send Nova events, collect output events, wait for conditions."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.ended = asyncio.Event()
        self._changed = asyncio.Condition()
        self._receiver: Any = None

    async def send(self, *events: dict[str, Any]) -> None:
        for event in events:
            part = models.BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())
            chunk = models.InvokeModelWithBidirectionalStreamInputChunk(value=part)
            await self.stream.input_stream.send(chunk)

    async def send_audio(self, pcm: bytes, *, speed: float = 8.0) -> None:
        for piece in chunks(pcm):
            await self.send(audio_input(piece))
            await asyncio.sleep(len(piece) / 32000 / speed)

    async def read(self) -> None:
        try:
            _, self._receiver = await self.stream.await_output()
            while (item := await self._receiver.receive()) is not None:
                self.events.append(json.loads(item.value.bytes_))
                async with self._changed:
                    self._changed.notify_all()
        except Exception as exc:
            self.error = exc
        finally:
            self.ended.set()
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(lambda: predicate() or self.ended.is_set())
        assert predicate(), f"condition not met; ended={self.ended.is_set()} error={self.error!r}"

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [e["event"][name] for e in self.events if name in e["event"]]

    def texts(self, role: str) -> list[str]:
        return [b["content"] for b in self.bodies("textOutput") if b["role"] == role]

    async def close(self) -> None:
        task = asyncio.create_task(self.stream.input_stream.close())
        await asyncio.wait({task}, timeout=2)
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)


async def make_client(emulator: Emulator) -> AsyncBedrockRuntimeClient:
    config = await AsyncBedrockRuntimeConfig.resolve(
        transport=AWSCRTHTTPClient(), aws_access_key_id=emulator.credentials.access_key_id,
        aws_secret_access_key=emulator.credentials.secret_access_key)
    return AsyncBedrockRuntimeClient(config=config)


Body = Callable[["Client"], Coroutine[Any, Any, None]]


async def session(emulator: Emulator, handler: str, body: Body) -> Client:
    client = await make_client(emulator)
    stream = await client.invoke_model_with_bidirectional_stream(
        models.InvokeModelWithBidirectionalStreamOperationInput(model_id=f"{handler}.{NOVA2}"))
    nova = Client(stream)
    async with asyncio.TaskGroup() as tasks:
        reader = tasks.create_task(nova.read())
        try:
            await body(nova)
        finally:
            await nova.close()
            await asyncio.wait({reader}, timeout=5)
            reader.cancel()
    await client.close()
    return nova


def run(coro: Coroutine[Any, Any, Client]) -> Client:
    async def main() -> Client:
        # awscrt reports writes racing a finished stream as never-retrieved task errors
        # (bedrock-sdk.md §6.3): noise here.
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(main())


async def shutdown(nova: Client) -> None:
    await nova.send(content_end("audio"), ev("promptEnd", promptName="p1"), ev("sessionEnd"))
    await nova.close()
    await asyncio.wait_for(nova.ended.wait(), 5)


# -- sessions -------------------------------------------------------------------------------------

def test_scripted_session_with_tool_round_trip(
        sdk_env: Emulator, router: Router, question_pcm: bytes) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(tools=("trackOrderTool",)), audio_start())
        await nova.send_audio(question_pcm + silence(0.8))
        await nova.wait_for(lambda: bool(nova.bodies("toolUse")))
        tool_use = nova.bodies("toolUse")[0]
        assert tool_use["toolName"] == "trackOrderTool"
        assert json.loads(tool_use["content"]) == {"orderId": "12345"}
        await nova.send(tool_start("r1", tool_use["toolUseId"]),
                        tool_result("r1", json.dumps({"orderId": "12345", "status": "shipped"})),
                        content_end("r1"))
        await nova.send_audio(silence(0.5))
        # SPECULATIVE before the audio, FINAL after it.
        await nova.wait_for(lambda: nova.texts("ASSISTANT").count("Your order 12345 is shipped.") == 2)
        await shutdown(nova)

    nova = run(session(sdk_env, "full", body))
    assert nova.error is None
    assert nova.texts("USER") == ["Where is my order 12345?"]
    audio = b"".join(base64.b64decode(b["content"]) for b in nova.bodies("audioOutput"))
    assert len(audio) > 16000 * 2  # over a second of real speech at the 16 kHz asked for
    names = [next(iter(e["event"])) for e in nova.events]
    assert names[0] == "completionStart" and names[-1] == "completionEnd"
    assert "usageEvent" in names
    record = router.handlers["full"].sessions[-1]
    assert record.user_turns == ["Where is my order 12345?"]
    assert record.tool_results[0].content == {"orderId": "12345", "status": "shipped"}
    assert record.audio_bytes == len(question_pcm) + len(silence(0.8)) + len(silence(0.5))
    assert bytes(record.audio[:len(question_pcm)]) == question_pcm
    assert record.ended == "closed"


def test_barge_in(sdk_env: Emulator, router: Router, question_pcm: bytes) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(), audio_start(), text_start("t", "USER", interactive=True),
                        text_input("t", "Tell me a story."), content_end("t"))
        await nova.wait_for(lambda: len(nova.bodies("audioOutput")) >= 3)
        await nova.send_audio(question_pcm + silence(0.8))
        await nova.wait_for(lambda: "Sorry." in nova.texts("ASSISTANT"))
        await shutdown(nova)

    nova = run(session(sdk_env, "barge", body))
    # The exact marker Nova sends (livekit compares it byte for byte).
    assert '{ "interrupted" : true }' in nova.texts("ASSISTANT")
    stops = [b["stopReason"] for b in nova.bodies("contentEnd")]
    assert "INTERRUPTED" in stops
    story_audio_id = next(b["contentId"] for b in nova.bodies("contentStart") if b["type"] == "AUDIO")
    story = [b for b in nova.bodies("audioOutput") if b["contentId"] == story_audio_id]
    story_s = sum(len(base64.b64decode(b["content"])) for b in story) / 2 / 24000
    full_s = len(speech.synthesize(STORY.turns[0].items[0].text, 24000)) / 2 / 24000  # type: ignore[union-attr]
    assert story_s < full_s - 1.0  # the rest of the answer was dropped
    assert nova.texts("USER") == ["Tell me a story.", "Stop, please."]
    assert router.handlers["barge"].sessions[-1].interruptions == 1


# -- validation exceptions through the SDK --------------------------------------------------------

def flat_endpointing() -> dict[str, Any]:
    event = session_start()
    event["event"]["sessionStart"]["endpointingSensitivity"] = "HIGH"
    return event


VALIDATION_CASES: dict[str, tuple[list[dict[str, Any]], str]] = {
    "flat endpointingSensitivity": ([flat_endpointing()], INVALID_INPUT),
    "capitalised voice id": ([session_start(), prompt_start("Matthew")], invalid_voice_message("Matthew")),
    "tool inputSchema.json not a string": (
        [session_start(), prompt_start(tools=("x",), schema_json={"type": "object"})], INVALID_INPUT),
    "event after sessionEnd": ([*opening(), ev("promptEnd", promptName="p1"), ev("sessionEnd"),
                                text_start("late", "USER")], INVALID_INPUT),
    "content event for a block not open": ([*opening(), text_input("nope", "hi")], INVALID_INPUT),
    "audioInput while a TEXT block is open": ([*opening(), audio_start(), text_start("t", "USER", True),
                                               audio_input(bytes(640))], CHAT_HISTORY_FIRST),
    "history starting with ASSISTANT": ([*opening(), text_start("h", "ASSISTANT")], ASSISTANT_FIRST),
}


async def expect_validation(nova: Client, events: list[dict[str, Any]], message: str) -> None:
    await nova.send(*events)
    await asyncio.wait_for(nova.ended.wait(), 10)
    assert isinstance(nova.error, models.ValidationException), repr(nova.error)
    assert nova.error.message == message


def refused(message: str, events: list[dict[str, Any]], sent_before: int = 0) -> str:
    """The service's message for the last of `events`, naming it and its position on the stream."""
    return f"{message} (input event #{sent_before + len(events)}: {next(iter(events[-1]['event']))})"


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation_exception(sdk_env: Emulator, case: str) -> None:
    events, message = VALIDATION_CASES[case]
    run(session(sdk_env, "strict", lambda nova: expect_validation(nova, events, refused(message, events))))


def test_tool_result_not_json(sdk_env: Emulator) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(tools=("trackOrderTool",)), audio_start(),
                        text_start("t", "USER", interactive=True), text_input("t", "where?"),
                        content_end("t"))
        await nova.wait_for(lambda: bool(nova.bodies("toolUse")))
        tool_use_id = nova.bodies("toolUse")[0]["toolUseId"]
        events = [tool_start("r", tool_use_id), tool_result("r", "shipped")]
        await expect_validation(nova, events, refused(TOOL_PARSE, events, sent_before=9))

    run(session(sdk_env, "strict", body))


def test_input_timeout(sdk_env: Emulator) -> None:
    events = [*opening(), audio_start()]
    run(session(sdk_env, "idle", lambda nova: expect_validation(nova, events, INPUT_TIMEOUT)))


def test_stream_time_limit(sdk_env: Emulator) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(), audio_start())
        while not nova.ended.is_set():
            await nova.send(audio_input(silence(0.064)))
            await asyncio.sleep(0.064)

    nova = run(session(sdk_env, "limit", body))
    assert isinstance(nova.error, models.ModelTimeoutException), repr(nova.error)
    assert nova.error.message == MODEL_TIMEOUT


# -- injected faults ------------------------------------------------------------------------------

def test_reset_fault_ends_receive_with_none(sdk_env: Emulator, router: Router) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(), audio_start())
        await asyncio.wait_for(nova.ended.wait(), 10)

    nova = run(session(sdk_env, "reset", body))
    assert nova.error is None and nova.ended.is_set()
    assert router.handlers["reset"].sessions[-1].ended == "reset"


def test_throttle_fault_raises_at_await_output(sdk_env: Emulator) -> None:
    async def attempt() -> BaseException | None:
        client = await make_client(sdk_env)
        stream = await client.invoke_model_with_bidirectional_stream(
            models.InvokeModelWithBidirectionalStreamOperationInput(model_id=f"throttle.{NOVA2}"))
        try:
            await stream.await_output()
        except models.ThrottlingException as exc:
            return exc
        finally:
            task = asyncio.create_task(stream.input_stream.close())
            await asyncio.wait({task}, timeout=1)
            task.cancel()
            await client.close()
        return None

    async def both() -> tuple[BaseException | None, BaseException | None]:
        return await attempt(), await attempt()

    first, second = asyncio.run(both())
    assert isinstance(first, models.ThrottlingException) and first.message == THROTTLED
    assert second is None


def test_stream_error_fault(sdk_env: Emulator) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(), audio_start(), text_start("t", "USER", interactive=True),
                        text_input("t", "hello"), content_end("t"))
        await asyncio.wait_for(nova.ended.wait(), 10)

    nova = run(session(sdk_env, "streamerr", body))
    assert isinstance(nova.error, models.ModelStreamErrorException), repr(nova.error)
    assert nova.texts("USER") == ["hello"]  # the fault came in the middle of the turn


def test_invalid_bytes_fault(sdk_env: Emulator) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(), audio_start(), text_start("t", "USER", interactive=True),
                        text_input("t", "hello"), content_end("t"))
        await asyncio.wait_for(nova.ended.wait(), 10)

    nova = run(session(sdk_env, "badbytes", body))
    assert isinstance(nova.error, InvalidEventBytes), repr(nova.error)


# -- fidelity with third-party clients (issue 8) --------------------------------------------------

async def ask(nova: Client, text: str, name: str) -> str:
    """Type `text` (interactive USER text) and return the answer's FINAL text."""
    finals = len(nova.texts("ASSISTANT"))
    await nova.send(text_start(name, "USER", interactive=True), text_input(name, text), content_end(name))
    await nova.wait_for(lambda: len(nova.texts("ASSISTANT")) >= finals + 2)  # SPECULATIVE, FINAL
    return nova.texts("ASSISTANT")[-1]


def test_an_empty_session_start_gets_the_services_defaults(sdk_env: Emulator) -> None:
    # strands sends {"event": {"sessionStart": {}}} on purpose.
    async def body(nova: Client) -> None:
        await nova.send(ev("sessionStart"), *opening()[1:], audio_start())
        assert await ask(nova, "hello", "t") == "Answer one."
        await shutdown(nova)

    nova = run(session(sdk_env, "multi", body))
    assert nova.error is None


def test_a_tool_the_session_did_not_declare_is_not_called(sdk_env: Emulator) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(), audio_start())  # no tools declared
        await ask(nova, "Where is my order?", "t")
        await shutdown(nova)

    nova = run(session(sdk_env, "strict", body))
    assert nova.error is None
    assert nova.bodies("toolUse") == []
    assert nova.texts("ASSISTANT")  # it answered without the tool


def test_a_plain_text_tool_result_is_spoken_not_an_internal_error(sdk_env: Emulator) -> None:
    async def body(nova: Client) -> None:
        await nova.send(*opening(tools=("trackOrderTool",)), audio_start(), text_start("t", "USER", True),
                        text_input("t", "where?"), content_end("t"))
        await nova.wait_for(lambda: bool(nova.bodies("toolUse")))
        tool_use_id = nova.bodies("toolUse")[0]["toolUseId"]
        # A JSON string where the scenario expects {orderId, status}.
        await nova.send(tool_start("r", tool_use_id), tool_result("r", json.dumps("It shipped on Monday.")),
                        content_end("r"))
        await nova.wait_for(lambda: "It shipped on Monday." in nova.texts("ASSISTANT"))
        await shutdown(nova)

    nova = run(session(sdk_env, "strict", body))
    assert nova.error is None


def test_concurrent_clients_each_get_their_own_conversation_and_a_continuation_resumes(
        sdk_env: Emulator, router: Router) -> None:
    async def client_a(nova: Client) -> None:
        await nova.send(*opening(), audio_start())
        assert await ask(nova, "one", "a1") == "Answer one."
        assert await ask(nova, "two", "a2") == "Answer two."
        await shutdown(nova)

    async def client_b(nova: Client) -> None:
        await nova.send(*opening(), audio_start())
        assert await ask(nova, "one", "b1") == "Answer one."
        await shutdown(nova)

    async def continuation_of_a(nova: Client) -> None:
        history = [("USER", "one"), ("ASSISTANT", "Answer one."),
                   ("USER", "two"), ("ASSISTANT", "Answer two.")]
        events = []
        for i, (role, text) in enumerate(history):
            events += [text_start(f"h{i}", role), text_input(f"h{i}", text), content_end(f"h{i}")]
        await nova.send(*opening(), *events, audio_start())
        assert await ask(nova, "three", "c1") == "Answer three."
        await shutdown(nova)

    async def both() -> None:
        async with asyncio.timeout(30), asyncio.TaskGroup() as tasks:
            tasks.create_task(session(sdk_env, "multi", client_a))
            tasks.create_task(session(sdk_env, "multi", client_b))
        await session(sdk_env, "multi", continuation_of_a)

    asyncio.run(both())
    records = router.handlers["multi"].sessions[-3:]
    assert len(records) == 3 and all(r.error is None for r in records)
    first, second, third = records
    assert first.conversation != second.conversation
    assert third.resumed and third.conversation in (first.conversation, second.conversation)
    a = first if first.user_turns == ["one", "two"] else second
    assert third.conversation == a.conversation


def test_audio_read_while_the_session_waits_goes_to_the_brain_inline(
        sdk_env: Emulator, router: Router) -> None:
    """Events that arrive one at a time (a real-time client) are fed to the brain where the wire
    layer reads them, without waking the session loop; the brain still sees every one of them,
    in order, and the session ends as before."""
    before = sdk_env.stats().events_inline
    pcm = silence(1.0)

    async def body(nova: Client) -> None:
        await nova.send(*opening(), audio_start())
        await nova.send_audio(pcm, speed=2.0)  # 32 events, one every 16 ms
        await shutdown(nova)

    nova = run(session(sdk_env, "full", body))
    assert nova.error is None
    sent = len(chunks(pcm))
    record = router.handlers["full"].sessions[-1]
    assert record.input_events.count("audioInput") == sent
    assert record.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert sdk_env.stats().events_inline - before >= sent // 2
