"""The composition root of `agent-run AGENT.yaml`: builds every part of a run and starts it.

Only this module knows all the kinds of component: the agent config, the transport (Bedrock,
or the built-in emulator reached through the very same SDK code path), the audio source and
sink, the policy, the transcript and the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from runner.audio import SinkSpec, SourceSpec, make_sink, make_source
from runner.audio.base import AudioFormat, AudioSink, AudioSource
from runner.config.model import AgentConfig
from runner.config.setup import session_setup
from runner.console import Console
from runner.conversation import Conversation, ConversationOptions, EventTap, SessionFactory, TextInput
from runner.conversation.control import PhoneCall
from runner.conversation.control import options_for as call_control_options
from runner.errors import RunnerError, TransportError
from runner.models import NOVA_2_SONIC, is_nova2, lifecycle_warning
from runner.policies import POLICIES
from runner.protocol.session import Session
from runner.protocol.setup import HistoryMessage
from runner.protocol.templates import BUILTIN_PREFIX, TEMPLATE_EVENTS
from runner.signals import STOP_SIGNALS, exit_code
from runner.stdin_text import StdinTextInput
from runner.tools.sources import open_tool_sources
from runner.transcript import Transcript
from runner.transports.base import Connector
from runner.transports.recording import Recording, RecordingConnector
from runner.transports.sdk_files import check_sdk_files

if TYPE_CHECKING:
    from runner.emulator.local import LocalEmulator

# After a WAV input has been played (or the typed input ended): how long the conversation must
# stay quiet before the run ends by itself (the emulator needs ~0.6 s of silence to end a turn).
DEFAULT_IDLE_EXIT_S = 2.5


@dataclass(frozen=True, slots=True)
class RunOptions:
    input_file: Path | None = None
    output_file: Path | None = None
    input_device: str | None = None
    output_device: str | None = None
    transcript: Path | None = None
    emulate: bool = False
    scenario: Path | None = None
    emulator_time_limit_s: float | None = None
    max_duration_s: float | None = None
    idle_exit_s: float | None = None
    profile: str | None = None
    record: Path | None = None  # --record DIR (runner.transports.recording)
    replay: Path | None = None  # with emulate: serve this recording's model side (runner.emulator.replay)
    # Text mode: the user types (lines from `text_input`, standard input by default) and no
    # microphone is opened; the session still streams silence underneath.
    text: bool = False
    text_input: TextInput | None = None
    mute: bool = False  # the assistant's speech goes nowhere (no speakers, no --output)
    taps: tuple[EventTap, ...] = ()  # see every event of the conversation as it happens


class RunObserver(Protocol):
    """Lets an embedding program (or a test) see the parts of a run as they are built."""

    def emulator_started(self, emulator: LocalEmulator) -> None: ...

    def conversation_finished(self, conversation: Conversation) -> None: ...


async def run_agent(agent: AgentConfig, options: RunOptions, console: Console,
                    observer: RunObserver | None = None) -> int:
    """Run one conversation; returns the process exit code."""
    _check_distinct_files(agent, options)
    if options.text and not is_nova2(agent.model.id):
        raise RunnerError(text_mode_refusal(agent))
    _explain_greeting(agent, console)
    if (retired := lifecycle_warning(agent.model.id)) is not None:
        console.warning(retired)  # `check` says it too; a run must not fail without a reason shown
    async with contextlib.AsyncExitStack() as stack:
        recording = stack.enter_context(_recording(agent, options)) if options.record else None
        connector = await stack.enter_async_context(connect(agent, options, console, observer))
        # The agent's MCP servers started, their tools added to the agent (runner.tools.sources).
        agent = await stack.enter_async_context(open_tool_sources(agent, warn=console.warning,
                                                                  info=console.info))
        if recording is not None:
            connector = RecordingConnector(connector, recording)
        source = await stack.enter_async_context(_source(agent, options))
        sink = await stack.enter_async_context(_sink(agent, options))
        transcript = stack.enter_context(Transcript(
            options.transcript or (recording.transcript_path if recording else None)))
        if recording is not None:
            recording.follow(transcript, copy=options.transcript is not None)
        text_input = await stack.enter_async_context(_text_input(options, console)) if options.text else None
        conversation = new_conversation(
            agent, connector, source=source, sink=sink, transcript=transcript, console=console,
            text_input=text_input, taps=options.taps, idle_exit_s=_idle_exit(options),
            max_duration_s=options.max_duration_s)
        console.info(f"{agent.name}: {agent.model.id} via {connector.info.endpoint} "
                     f"(voice {agent.voice}, policy {agent.policy}); Ctrl-C to stop")
        if isinstance(text_input, StdinTextInput) and text_input.interrupts:
            console.info("text mode: type a line and press Enter to send it; Ctrl-D ends the input")
            console.prompt("> ")
        with _signals_stop(conversation):
            try:
                outcome = await conversation.run()
            except TransportError as exc:  # name the agent's template override the service refused
                hint = agent.templates.blame(str(exc)) if exc.kind == "ValidationException" else None
                if hint is None:
                    raise
                raise TransportError(f"{exc}\n  ({hint})", kind=exc.kind, retryable=exc.retryable) from exc
            finally:
                if observer is not None:
                    observer.conversation_finished(conversation)
        console.close()
        console.info(f"session ended: {outcome.reason}")
        if outcome.error:
            print(f"agent-run: error: {outcome.reason}", file=sys.stderr)
        return outcome.code
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: AsyncExitStack may swallow)


def new_conversation(agent: AgentConfig, connector: Connector, *, source: AudioSource, sink: AudioSink,
                     transcript: Transcript, console: Console, text_input: TextInput | None = None,
                     taps: tuple[EventTap, ...] = (), idle_exit_s: float | None = None,
                     max_duration_s: float | None = None, phone: PhoneCall | None = None) -> Conversation:
    """One conversation of `agent` over `connector` with the caller's parts (entered by the caller).

    `run_agent` builds its parts from the command line; `agent-run serve` gives one per connected
    caller (runner.serve.conversations), sharing one connector.
    """
    return Conversation(
        connector=connector, model_id=agent.model.id, new_session=_session_factory(agent),
        source=source, sink=sink, policy=POLICIES[agent.policy](),
        tools={t.name: t for t in agent.tools}, transcript=transcript, console=console,
        options=ConversationOptions(idle_exit_s=idle_exit_s, max_duration_s=max_duration_s,
                                    rotate_after_s=agent.session.rotate_after_s),
        input_finished=_finished_probe(source), labels={"agent": agent.name, "policy": agent.policy},
        text_input=text_input, taps=taps, call_control=call_control_options(agent.session), phone=phone)


def _recording(agent: AgentConfig, options: RunOptions) -> Recording:
    assert options.record is not None
    return Recording(options.record, input_rate=agent.audio.input_sample_rate,
                     output_rate=agent.audio.output_sample_rate,
                     labels={"agent": agent.name, "model": agent.model.id},
                     protected=[*_run_inputs(agent, options),
                                *([("--output", options.output_file)] if options.output_file else [])])


def _session_factory(agent: AgentConfig) -> SessionFactory:
    base = session_setup(agent)

    def new_session(history: tuple[HistoryMessage, ...], first: bool) -> Session:
        # Only the first stream greets; later ones continue the conversation from its history.
        setup = replace(base, history=history, greeting=base.greeting if first else None)
        return Session(setup, agent.templates, new_id=lambda: str(uuid.uuid4()))

    return new_session


def text_mode_refusal(agent: AgentConfig) -> str:
    """Why `agent` cannot run in text mode (its model takes no typed input)."""
    return (f"{agent.path}: model {agent.model.id} answers speech only: typed input (--text) needs "
            f"a Nova 2 model such as {NOVA_2_SONIC.id}")


@contextlib.asynccontextmanager
async def _text_input(options: RunOptions, console: Console) -> AsyncIterator[TextInput]:
    if options.text_input is not None:
        yield options.text_input
        return
    async with StdinTextInput(console.warning) as stdin:
        yield stdin


def _explain_greeting(agent: AgentConfig, console: Console) -> None:
    if agent.greeting and not is_nova2(agent.model.id):
        console.warning(f"{agent.model.id} only answers speech: the greeting is not sent "
                        "(use a Nova 2 model for the assistant to speak first)")


@contextlib.asynccontextmanager
async def connect(agent: AgentConfig, options: RunOptions, console: Console,
                   observer: RunObserver | None) -> AsyncIterator[Connector]:
    check_sdk_files()  # before the import: importing the SDK already reads SSL_CERT_FILE
    from runner.transports.bedrock import open_connector  # the SDK import costs ~0.6 s

    if not options.emulate:
        connector = await open_connector(region=agent.model.region, endpoint=agent.model.endpoint,
                                         profile=options.profile)
        try:
            yield connector
        finally:
            await connector.aclose()
        return
    from runner.emulator.local import local_emulator

    region = agent.model.region or "us-east-1"
    async with local_emulator(options.scenario, region=region, time_limit_s=options.emulator_time_limit_s,
                              replay=options.replay) as emulator:
        # The SDK reads the CA and credentials from the environment, exactly as a user would
        # point it at `agent-run emulate`; nothing in the stream path knows it is local.
        os.environ.update(emulator.env())
        if observer is not None:
            observer.emulator_started(emulator)
        script = (f"replay of {options.replay}" if options.replay
                  else f"scenario: {options.scenario or 'built-in default'}")
        console.info(f"emulator: {emulator.endpoint} ({script})")
        connector = await open_connector(region=region, endpoint=emulator.endpoint)
        try:
            yield connector
        finally:
            await connector.aclose()


def _check_distinct_files(agent: AgentConfig, options: RunOptions) -> None:
    """Refuse a run that would overwrite its own input (checked before anything is opened).

    The outputs (`--output`, `--transcript`) are written as the run goes, so one naming the
    `--input` WAV, the agent file, an event template override, a tool's module, the emulator's
    scenario, or the other output (by another spelling, a symlink or a hard link) would destroy
    it. `system_prompt_file` is read and rendered before this point, so the prompt itself is safe;
    it is not in the list only because the typed config does not keep its path.
    """
    outputs = [(flag, path) for flag, path in (("--output", options.output_file),
                                               ("--transcript", options.transcript)) if path is not None]
    inputs = _run_inputs(agent, options)
    for i, (flag, path) in enumerate(outputs):
        for other_flag, other in [*inputs, *outputs[:i]]:
            if _same_file(path, other):
                raise RunnerError(f"{flag} {path} is the same file as {other_flag} {other}; "
                                  "name a different file")


def _run_inputs(agent: AgentConfig, options: RunOptions) -> list[tuple[str, Path]]:
    """Every file the run reads that a user could name as an output by mistake."""
    files: list[tuple[str, Path]] = [("the agent file", agent.path)]
    if options.input_file is not None:
        files.append(("--input", options.input_file))
    if options.scenario is not None:
        files.append(("the --emulate scenario", options.scenario))
    for name in TEMPLATE_EVENTS:
        filename = agent.templates.source(name).filename
        if not filename.startswith(BUILTIN_PREFIX):
            files.append(("the event template", Path(filename)))
    for tool in agent.tools:
        module = sys.modules.get(getattr(tool.function, "__module__", None) or "")
        try:  # a module is user code: its attributes may do anything
            module_file = module.__dict__.get("__file__") if module is not None else None
        except Exception:
            module_file = None
        if isinstance(module_file, str):
            files.append((f"the module of tool {tool.name}", Path(module_file)))
    return files


def _same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are one regular file (devices such as /dev/null may be shared)."""
    try:
        return os.path.samefile(a, b) and stat.S_ISREG(os.stat(a).st_mode)
    except OSError:  # one does not exist yet (or loops): the same only if both spell one path
        return os.path.realpath(a) == os.path.realpath(b)


def _source(agent: AgentConfig, options: RunOptions) -> AudioSource:
    fmt = AudioFormat(agent.audio.input_sample_rate)
    if options.text:  # the service needs audio flowing in a voice session: silence, paced
        return make_source("null", SourceSpec(fmt, agent.audio.chunk_ms))
    if options.input_file is not None:
        return make_source("wav", SourceSpec(fmt, agent.audio.chunk_ms, str(options.input_file)))
    return make_source("mic", SourceSpec(fmt, agent.audio.chunk_ms, _device(options.input_device)))


def _sink(agent: AgentConfig, options: RunOptions) -> AudioSink:
    fmt = AudioFormat(agent.audio.output_sample_rate)
    if options.mute:  # played in real time into nothing, so turns keep their pace
        return make_sink("null", SinkSpec(fmt))
    if options.output_file is not None:
        return make_sink("wav", SinkSpec(fmt, str(options.output_file)))
    return make_sink("speaker", SinkSpec(fmt, _device(options.output_device)))


def _device(selector: str | None) -> int | str | None:
    if selector is None:
        return None
    return int(selector) if selector.isdigit() else selector


def _idle_exit(options: RunOptions) -> float | None:
    if options.idle_exit_s is not None:
        return options.idle_exit_s
    return DEFAULT_IDLE_EXIT_S if options.input_file is not None or options.text else None


def _finished_probe(source: AudioSource) -> Callable[[], bool]:
    def finished() -> bool:
        return bool(getattr(source, "finished", False))

    return finished


@contextlib.contextmanager
def _signals_stop(conversation: Conversation) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the session in the documented order; exit 128 + signal."""
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Any]] = []
    for signum in STOP_SIGNALS:
        previous = signal.getsignal(signum)
        try:
            stop = partial(conversation.request_stop, f"interrupted ({signum.name})",
                           code=exit_code(signum), graceful=False)
            loop.add_signal_handler(signum, stop)
            installed.append((signum, previous))
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        yield
    finally:
        for signum, previous in installed:
            loop.remove_signal_handler(signum)
            # Back to what was there (runner.signals' handler), not to the default action.
            if previous is not None:
                signal.signal(signum, previous)
