"""Runs one test case: a conversation with the agent, driven turn by turn, then each turn's record.

Theory of operation
- A case gets its own model side: a local emulator of its own (the case's scenario) or real
  Bedrock (`target="bedrock"`), and its own Conversation, so cases can run side by side in one
  event loop without sharing any state.
- The conversation is the real one (`runner.conversation`), reached through the real SDK over TLS.
  Only the edges differ from `agent-run AGENT.yaml`: the microphone is a `ScriptedSource` (silence,
  and a turn's speech when the driver says so), the speakers are a null sink that plays in real
  time (so the policy's half duplex and the emulator's barge-in timing stay meaningful), the
  transcript is kept in memory with a monotonic clock, and a `Tap` (an EventTap) notes when
  assistant audio starts, answers end, typed lines are sent and the user's speech ends.
- The driver sends a turn once the previous answer is over (assistant audio started after the
  turn's input, then an END_TURN or INTERRUPTED content end; no tool still running; nothing left
  to play), or `barge_in_ms` after the previous answer's first audio. Typed text goes through the
  conversation's QueueTextInput, speech through the scripted microphone; an EventTap gives the
  times. Every wait is bounded by the case's `timeout_s`.
- Afterwards the timeline is cut at each turn's start into `TurnRecord`s for the expectations.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from runner.audio.base import AudioFormat
from runner.audio.null import NullSink
from runner.audio.pacing import PacedSource
from runner.audio.wav import read_wav
from runner.config.model import AgentConfig, ToolConfig
from runner.config.setup import session_setup
from runner.console import Console
from runner.conversation import Conversation, ConversationOptions, QueueTextInput
from runner.conversation.control import options_for as call_control_options
from runner.errors import RunnerError, ToolError
from runner.models import is_nova2
from runner.policies import POLICIES
from runner.protocol.events import AudioOutput, ContentEnd, OutputEvent
from runner.protocol.session import Session
from runner.protocol.setup import HistoryMessage
from runner.testing.expectations import Ended as EndedExpectation
from runner.testing.model import AudioInput, Case, Mock, ModelSide, SpeechInput, TextInput, Turn, UserInput
from runner.testing.record import ToolCallRecord, TurnRecord, compact
from runner.tools.sources import open_tool_sources
from runner.transcript import Transcript
from runner.transports.base import Connector

Target = Literal["emulator", "bedrock"]
POLL_S = 0.02
STOP_S = 5.0
# How long after the last chunk of a spoken turn its end of speech is looked for (the tap reports
# it after half a second of quiet).
SPEECH_END_WAIT_S = 1.5


# -- the edges of the conversation ---------------------------------------------------------------

class ScriptedSource(PacedSource):
    """The test's microphone: silence, and a turn's speech when `speak` queues it. Muted (the
    half-duplex policy while the assistant speaks) it holds its place, as a recording would."""

    def __init__(self, fmt: AudioFormat, chunk_ms: int, clock: Callable[[], float]) -> None:
        super().__init__(fmt, chunk_ms, clock=clock)
        self._clock = clock
        self._speech = bytearray()
        self.started_at: float | None = None
        self.ended_at: float | None = None

    def speak(self, pcm: bytes) -> None:
        self._speech.extend(pcm)
        self.started_at = self.ended_at = None

    @property
    def speaking(self) -> bool:
        return bool(self._speech)

    def _next_chunk(self) -> bytes:
        if not self._speech:
            return bytes(self.chunk_bytes)
        if self.started_at is None:
            self.started_at = self._clock()
        chunk = bytes(self._speech[:self.chunk_bytes]).ljust(self.chunk_bytes, b"\0")
        del self._speech[:self.chunk_bytes]
        if not self._speech:
            self.ended_at = self._clock()
        return chunk


@dataclass
class Tap:
    """An EventTap noting, with the conversation's clock, what the driver waits for and measures."""

    audio_starts: list[float] = field(default_factory=list)  # first chunk of each assistant audio block
    answer_ends: list[float] = field(default_factory=list)  # END_TURN / INTERRUPTED content ends
    typed: list[float] = field(default_factory=list)  # when each typed line was sent
    speech_ends: list[float] = field(default_factory=list)  # the last loud chunk of each utterance
    _audio_blocks: set[str] = field(default_factory=set)

    def output(self, event: OutputEvent, at: float) -> None:
        if isinstance(event, AudioOutput) and event.content_id not in self._audio_blocks:
            self._audio_blocks.add(event.content_id)
            self.audio_starts.append(at)
        elif isinstance(event, ContentEnd) and event.stop_reason in ("END_TURN", "INTERRUPTED"):
            self.answer_ends.append(at)

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        if kind == "user_text":
            self.typed.append(at)
        elif kind == "audio" and fields.get("speaking") is False:
            self.speech_ends.append(at)


def mocked_tools(tools: tuple[ToolConfig, ...], mocks: Mapping[str, Mock]) -> dict[str, ToolConfig]:
    """The agent's tools with each mocked one's handler replaced by its canned answer."""
    return {t.name: replace(t, function=_canned(mocks[t.name])) if t.name in mocks else t for t in tools}


def _canned(mock: Mock) -> Callable[..., Any]:
    def canned(**_arguments: Any) -> Any:
        if mock.error is not None:
            raise ToolError(mock.error)
        return mock.result

    canned.__name__ = f"mock_{mock.tool}"
    return canned


# -- the model side ------------------------------------------------------------------------------

class _SharedEnvironment:
    """The emulators of one process share the per-user CA and keys, which the SDK reads from the
    environment: set while any case runs, restored after the last (endpoints are per case)."""

    def __init__(self) -> None:
        self._users = 0
        self._saved: dict[str, str | None] = {}

    @contextlib.contextmanager
    def use(self, env: Mapping[str, str]) -> Iterator[None]:
        if self._users == 0:
            self._saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            if self._users == 0:
                for key, value in self._saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


_ENVIRONMENT = _SharedEnvironment()


@contextlib.asynccontextmanager
async def connect(agent: AgentConfig, target: Target, model: ModelSide, report: Callable[[str], None]
                  ) -> AsyncIterator[Connector]:
    """A connector to the case's own emulator (playing `model`), or to real Bedrock."""
    from runner.transports.bedrock import open_connector  # the SDK import costs ~0.6 s
    from runner.transports.sdk_files import check_sdk_files

    check_sdk_files()
    if target == "bedrock":
        connector = await open_connector(region=agent.model.region, endpoint=agent.model.endpoint)
        try:
            yield connector
        finally:
            await connector.aclose()
        return
    from runner.emulator.api import StreamHandler
    from runner.emulator.nova import NovaConfig, NovaHandler
    from runner.emulator.replay import ReplayHandler
    from runner.emulator.server import Emulator

    region = agent.model.region or "us-east-1"
    handler: StreamHandler = NovaHandler(NovaConfig(scenario=model.scenario) if model.scenario
                                         else NovaConfig())
    if model.replay is not None:
        handler = ReplayHandler(model.replay, report=report)
    async with Emulator(handler, region=region) as server:
        env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"}
        with _ENVIRONMENT.use(env):
            connector = await open_connector(region=region, endpoint=server.endpoint)
            try:
                yield connector
            finally:
                await connector.aclose()


# -- driving a case ------------------------------------------------------------------------------

@dataclass
class _TurnMarks:
    turn: Turn
    started_at: float
    input_end_at: float | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class CaseRun:
    """What happened in one run of a case: a record per turn driven, or the error that ended it."""

    turns: tuple[TurnRecord, ...]
    error: str | None = None
    log: str = ""


class _TurnTimeout(Exception):
    pass


async def run_case(agent: AgentConfig, case: Case, *, target: Target = "emulator") -> CaseRun:
    """Run `case` once against `target`; never raises for what the conversation does."""
    clock = time.monotonic
    log = io.StringIO()
    console = Console(stream=log)
    differences: list[str] = []  # from a replayed recording: the first input that differs
    try:
        pcm_inputs = await asyncio.to_thread(_prepare_inputs, agent, case)
        async with contextlib.AsyncExitStack() as stack:
            connector = await stack.enter_async_context(
                connect(agent, target, case.model, differences.append))
            # The agent's MCP servers, started for this run of the case (runner.tools.sources).
            agent = await stack.enter_async_context(open_tool_sources(agent, warn=console.warning))
            source = await stack.enter_async_context(
                ScriptedSource(AudioFormat(agent.audio.input_sample_rate), agent.audio.chunk_ms, clock))
            sink = await stack.enter_async_context(NullSink(AudioFormat(agent.audio.output_sample_rate)))
            transcript = stack.enter_context(Transcript(None, clock=clock))
            tap = Tap()
            typing = QueueTextInput()
            conversation = Conversation(
                connector=connector, model_id=agent.model.id, new_session=_session_factory(agent),
                source=source, sink=sink, policy=POLICIES[agent.policy](),
                tools=mocked_tools(agent.tools, case.mocks),
                transcript=transcript, console=console,
                options=ConversationOptions(rotate_after_s=agent.session.rotate_after_s),
                labels={"agent": agent.name, "policy": agent.policy}, text_input=typing, taps=(tap,),
                call_control=call_control_options(agent.session))
            driver = _Driver(agent, case, conversation, source, sink, tap, transcript, typing, clock,
                             pcm_inputs)
            marks, error = await driver.run()
            if differences:  # the precise reason the stream failed, in the replay's words
                error = differences[0]
            console.close()
            return CaseRun(tuple(_records(marks, transcript.entries, tap)), error, log.getvalue())
    except RunnerError as exc:
        return CaseRun((), str(exc), log.getvalue())


def _prepare_inputs(agent: AgentConfig, case: Case) -> dict[int, bytes]:
    """The PCM of every spoken turn, made before the conversation starts (a voice, WAV files)."""
    from runner.emulator.speech import resample
    from runner.testing.voices import chosen_voice

    rate = agent.audio.input_sample_rate
    pcm: dict[int, bytes] = {}
    for index, turn in enumerate(case.turns):
        if isinstance(turn.input, SpeechInput):
            voice = chosen_voice()
            if (missing := voice.available()) is not None:
                raise RunnerError(f"{turn.where}: `say:` needs {voice.name} to synthesize speech "
                                  f"(not installed; {missing})")
            try:
                raw, raw_rate = voice.speak(turn.input.text)
            except (OSError, subprocess.SubprocessError) as exc:
                raise RunnerError(f"{turn.where}: cannot synthesize speech with {voice.name}: "
                                  f"{exc}") from None
            pcm[index] = resample(raw, raw_rate, rate)
        elif isinstance(turn.input, AudioInput):
            pcm[index] = read_wav(turn.input.path, rate)
    return pcm


def _session_factory(agent: AgentConfig) -> Callable[[tuple[HistoryMessage, ...], bool], Session]:
    """Sessions as `agent-run AGENT` makes them (runner.engine): only the first stream greets."""
    base = session_setup(agent)

    def new_session(history: tuple[HistoryMessage, ...], first: bool) -> Session:
        setup = replace(base, history=history, greeting=base.greeting if first else None)
        return Session(setup, agent.templates, new_id=lambda: str(uuid.uuid4()))

    return new_session


class _Driver:
    def __init__(self, agent: AgentConfig, case: Case, conversation: Conversation, source: ScriptedSource,
                 sink: NullSink, tap: Tap, transcript: Transcript, typing: QueueTextInput,
                 clock: Callable[[], float], pcm: Mapping[int, bytes]) -> None:
        self.agent = agent
        self.case = case
        self.conversation = conversation
        self.source = source
        self.sink = sink
        self.tap = tap
        self.transcript = transcript
        self.typing = typing
        self.clock = clock
        self.pcm = pcm
        self._task: asyncio.Task[tuple[bool, str]] | None = None

    async def run(self) -> tuple[list[_TurnMarks], str | None]:
        marks: list[_TurnMarks] = []
        error: str | None = None
        async with asyncio.TaskGroup() as tg:
            self._task = tg.create_task(self._converse(), name="conversation")
            try:
                await self._drive(marks)
                if self._expects_end():
                    await self._until_ended(marks)
            except _TurnTimeout:
                pass
            except _Ended as exc:
                error = self._ended_early(marks, str(exc))
            finally:
                self.conversation.request_stop("test case finished")
            try:
                async with asyncio.timeout(STOP_S):
                    failed, why = await asyncio.shield(self._task)
                error = error or (why if failed else None)
            except TimeoutError:
                self._task.cancel()
                error = error or f"the conversation did not end within {STOP_S:g} s of the case's end"
        return marks, error

    def _expects_end(self) -> bool:
        return any(isinstance(e, EndedExpectation) for turn in self.case.turns for e in turn.expectations)

    async def _until_ended(self, marks: list[_TurnMarks]) -> None:
        """Every turn was answered and the case expects the call to end: let it end by itself
        (runner.conversation.control), within the case's timeout."""
        deadline = self.clock() + self.case.timeout_s
        while self._task is not None and not self._task.done():
            if self.clock() >= deadline:
                if marks:
                    marks[-1].problem = (f"timed out after {self.case.timeout_s:g} s waiting for the call "
                                         "to end")
                return
            await asyncio.sleep(POLL_S)

    def _ended_early(self, marks: list[_TurnMarks], why: str) -> str | None:
        """The conversation ended while the case went on: an error, unless the call ended on purpose
        (call control) after the last turn's input was sent (its expectations judge the rest)."""
        reason = next((e["reason"] for e in self.transcript.entries if e["type"] == "call_ended"), None)
        if reason is None:
            return why
        sent = len(marks) == len(self.case.turns) and marks[-1].input_end_at is not None
        return None if sent else f"the call ended ({reason}) before turn {len(marks) + 1} of the case"

    async def _converse(self) -> tuple[bool, str]:
        """Run the conversation; (whether it failed, how it ended). Never raises a runner error,
        so a failed stream (a replay's difference, a refused request) is the case's failure."""
        try:
            outcome = await self.conversation.run()
        except RunnerError as exc:
            return True, f"the conversation failed: {exc}"
        return outcome.error, f"the conversation ended early: {outcome.reason}"

    async def _drive(self, marks: list[_TurnMarks]) -> None:
        # The answer to wait for before the next turn: the greeting's, then each input's.
        answered_since: float | None = None
        if self.agent.greeting and is_nova2(self.agent.model.id):
            answered_since = 0.0
        previous_end: float | None = None
        for index, turn in enumerate(self.case.turns):
            if turn.input is None:  # no input: wait for the answer still to come (the greeting's)
                mark = _TurnMarks(turn, self.clock(), input_end_at=self.clock())
                marks.append(mark)
                since = answered_since if answered_since is not None else mark.started_at
                if not await self._until(lambda s=since: self._answered(s), mark,  # type: ignore[misc]
                                         "the assistant to answer"):
                    raise _TurnTimeout
                answered_since, previous_end = None, mark.started_at
                continue
            # Waiting for the previous answer belongs to the previous turn (its answer is late);
            # before the first turn, to this one (the greeting's answer), which is then not sent.
            waiting = marks[-1] if marks else _TurnMarks(turn, self.clock())
            # The answer a barge-in speaks over: the previous input's, or the greeting's.
            over = previous_end if previous_end is not None else answered_since
            if turn.barge_in_ms is not None and over is not None:
                if not await self._until(lambda s=over: self._audio_after(s), waiting,  # type: ignore[misc]
                                         "the assistant to start speaking"):
                    if not marks:
                        marks.append(waiting)
                    raise _TurnTimeout
                await asyncio.sleep(turn.barge_in_ms / 1000)
            elif answered_since is not None:
                what = "the greeting's answer" if previous_end is None else "the assistant's answer"
                if not await self._until(lambda s=answered_since: self._answered(s), waiting,  # type: ignore[misc]
                                         what):
                    if not marks:
                        marks.append(waiting)
                    raise _TurnTimeout
            if turn.wait_ms:
                await asyncio.sleep(turn.wait_ms / 1000)
            mark = _TurnMarks(turn, self.clock())
            marks.append(mark)
            mark.input_end_at = await self._send(index, turn.input, mark)
            if mark.input_end_at is None:
                raise _TurnTimeout
            previous_end = answered_since = mark.input_end_at
        last = marks[-1] if marks else None
        if last is not None and answered_since is not None:
            final = answered_since
            if not await self._until(lambda: self._answered(final), last, "the assistant's answer"):
                raise _TurnTimeout

    async def _send(self, index: int, user_input: UserInput, mark: _TurnMarks) -> float | None:
        """Send the turn's input; when it ended (None: timed out)."""
        if isinstance(user_input, TextInput):
            self.typing.put_nowait(user_input.text)  # a line put is sent once the stream streams
            if not await self._until(lambda: self._after(self.tap.typed, mark.started_at) is not None, mark,
                                     "the typed text to be sent"):
                return None
            return self._after(self.tap.typed, mark.started_at)
        self.source.speak(self.pcm[index])
        if not await self._until(lambda: not self.source.speaking and self.source.ended_at is not None, mark,
                                 "the user's speech to be sent"):
            return None
        sent_until = self.source.ended_at
        # The end of speech is its last loud chunk (the conversation's tap says so after a short
        # quiet); a recording that ends in silence would otherwise count that silence as waiting.
        deadline = self.clock() + SPEECH_END_WAIT_S
        while True:
            end = self._after(self.tap.speech_ends, mark.started_at)
            if end is not None or self.clock() >= deadline:
                return end if end is not None else sent_until
            await asyncio.sleep(POLL_S)

    @staticmethod
    def _after(times: list[float], since: float) -> float | None:
        return next((t for t in times if t >= since), None)

    def _answered(self, since: float) -> bool:
        # The answer to the input, not the end of one it interrupted (whose end may come later):
        # an answer end after the first assistant audio that started after the input.
        started = self._after(self.tap.audio_starts, since)
        return (started is not None and self._after(self.tap.answer_ends, started) is not None
                and self._tools_running() == 0 and self.sink.pending_ms() == 0)

    def _tools_running(self) -> int:
        """Tool calls without a result yet (the transcript writes both as they happen)."""
        kinds = [e["type"] for e in self.transcript.entries]
        return kinds.count("tool_call") - kinds.count("tool_result")

    def _audio_after(self, since: float) -> bool:
        return any(t >= since for t in self.tap.audio_starts)

    async def _until(self, done: Callable[[], bool], mark: _TurnMarks, what: str) -> bool:
        """Wait for `done` (polled), at most the case's timeout; False (noted on `mark`) if it
        timed out. Raises _Ended when the conversation ended first."""
        deadline = self.clock() + self.case.timeout_s
        while not done():
            if self._task is not None and self._task.done():
                raise _Ended(_ended_reason(self._task))
            if self.clock() >= deadline:
                mark.problem = f"timed out after {self.case.timeout_s:g} s waiting for {what}"
                return False
            await asyncio.sleep(POLL_S)
        return True


class _Ended(Exception):
    """The conversation ended before the case did."""


def _ended_reason(task: asyncio.Task[tuple[bool, str]]) -> str:
    if task.cancelled():
        return "the conversation was cancelled"
    return task.result()[1]


# -- records -------------------------------------------------------------------------------------

def _records(marks: list[_TurnMarks], entries: list[dict[str, Any]], tap: Tap) -> Iterator[TurnRecord]:
    usage: int | None = None
    for i, mark in enumerate(marks):
        end = marks[i + 1].started_at if i + 1 < len(marks) else float("inf")
        window = [e for e in entries if mark.started_at <= e["ts"] < end]
        usage = next((e["total_tokens"] for e in reversed(entries) if e["type"] == "usage" and e["ts"] < end),
                     usage)
        yield _record(i + 1, mark, window, tap, end, usage)


def _record(index: int, mark: _TurnMarks, window: list[dict[str, Any]], tap: Tap, end: float,
            usage: int | None) -> TurnRecord:
    calls: dict[str, ToolCallRecord] = {}
    lines = [_input_line(mark.turn.input)]
    heard: list[str] = []
    said: list[str] = []
    interrupted = False
    ended: str | None = None
    for entry in window:
        kind = entry["type"]
        if kind == "user":
            heard.append(entry["text"])
            lines.append(f"heard: {entry['text']}")
        elif kind == "greeting":
            lines.append(f"greeting: {entry['text']}")
        elif kind == "assistant":
            said.append(entry["text"])
            lines.append(f"assistant: {entry['text']}")
        elif kind == "tool_call":
            calls[entry["tool_use_id"]] = ToolCallRecord(entry["name"], entry["input"])
            lines.append(f"tool call: {entry['name']} {compact(entry['input'])}")
        elif kind == "tool_result" and entry["tool_use_id"] in calls:
            call = calls[entry["tool_use_id"]]
            calls[entry["tool_use_id"]] = replace(call, result=entry.get("result"), error=entry.get("error"),
                                                  duration_ms=entry["duration_ms"])
            shown = f"error {entry['error']}" if "error" in entry else compact(entry.get("result"))
            lines.append(f"tool result: {entry['name']} {shown} ({entry['duration_ms']:.0f} ms)")
        elif kind == "interrupted":
            interrupted = True
            lines.append("(the assistant was interrupted)")
        elif kind == "call_ended":
            ended = entry["reason"]
            lines.append(f"(the call ended: {ended})")
        elif kind == "call_control":
            lines.append(f"({entry['event']} sent: {entry['text']})")
    first_audio = None
    if mark.input_end_at is not None:
        after = [t for t in tap.audio_starts if mark.input_end_at <= t < end]
        first_audio = (after[0] - mark.input_end_at) * 1000 if after else None
    if mark.problem:
        lines.append(f"({mark.problem})")
    return TurnRecord(index=index, input=lines[0], heard=tuple(heard), said=tuple(said),
                      tool_calls=tuple(calls.values()), interrupted=interrupted, first_audio_ms=first_audio,
                      total_tokens=usage, lines=tuple(lines), problem=mark.problem,
                      sent=mark.input_end_at is not None, ended=ended)


def _input_line(user_input: UserInput | None) -> str:
    match user_input:
        case TextInput(text=text):
            return f"> typed: {text}"
        case SpeechInput(text=text):
            return f"> spoke: {text}"
        case AudioInput(path=path):
            return f"> audio: {path}"
        case _:
            return "> (waiting for the assistant)"
