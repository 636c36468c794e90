"""`agent-run emulate --replay DIR`: the model's side of a recorded session, served back.

Theory of operation
- A recording (runner.transports.recording) holds, per stream, the runner's input events and the
  model's output events with their times. Replaying it against a live runner turns a session once
  held with real Nova Sonic into an offline regression test: the model says exactly what it said,
  and the runner must send what it sent then.
- Each recorded output is released by a gate, not a clock: it waits until the live runner has sent
  as many non-audio input events as the recording had before that output, and as much input audio
  (counted in bytes, never compared byte for byte), then follows after the same delay it had after
  the input before it. So an answer comes when the user's recorded audio has streamed as far as it
  had, and the tool's answer comes after the live tool result, however fast the live tool is.
- Every live non-audio input event is compared with the recorded one at the same position, field
  by field. The runner's own ids (promptName, contentName, toolUseId) are compared structurally: a
  recorded id must always map to the same live id (and back), whatever its spelling. A JSON string
  (a tool result, a tool schema) is compared as JSON. Audio chunks are compared without their
  content. Tolerances: the runner may send its next event with up to `audio_early_s` less audio
  than recorded (the outputs recorded before it are then released at once), and an expected event
  counts as missing once `audio_late_s` more audio than recorded has come without it.
- The first difference (which stream and input event, the field, expected vs got, shortened) ends
  the stream with a validationException carrying that message, so the live run fails with it, and
  is reported on the emulator's log (`report`) and kept in `ReplayHandler.differences`.
- `StreamReplay` is sans-IO (events and times in, due outputs out); `ReplayHandler` is the async
  adapter the emulator's wire server runs, as NovaHandler is for scenarios.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from runner.emulator.api import EXCEPTION_KINDS, EmulatorStream, Rejection, StreamRequest, read_into
from runner.emulator.eventlog import StreamLog
from runner.emulator.validation import INPUT_TIMEOUT, InputValidator, NovaValidationError
from runner.errors import RunnerError
from runner.files import read_user_file

log = logging.getLogger("runner.emulator.replay")

EVENTS_FILE = "events.jsonl"
META_FILE = "recording.json"
MAX_EVENTS_BYTES = 1 << 30
ID_KEYS = frozenset({"promptName", "contentName", "toolUseId"})
SHORT = 70
INBOX_SIZE = 64
# HTTP statuses of the service errors that refuse a request before its stream is accepted.
REJECTIONS = {"ThrottlingException": 429, "ServiceUnavailableException": 503,
              "InternalServerException": 500, "ModelNotReadyException": 429,
              "ValidationException": 400, "AccessDeniedException": 403}
END_OF_INPUT = "the end of input"


class ReplayError(RunnerError):
    """The recording cannot be read (its message names FILE:LINE)."""


class Difference(Exception):
    """The live runner sent something other than the recording has."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- the recording, read -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TapeLine:
    t: float
    direction: str  # "in" or "out"
    event: dict[str, Any] | None = None
    audio_bytes: int = 0
    accepted: bool = False
    end: bool = False
    error: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        inner = self.event.get("event") if self.event else None
        return next(iter(inner)) if isinstance(inner, dict) and len(inner) == 1 else "?"

    @property
    def body(self) -> Any:
        inner = self.event.get("event") if self.event else None
        return inner.get(self.name) if isinstance(inner, dict) else None


@dataclass(frozen=True, slots=True)
class Tape:
    directory: Path
    input_rate: int
    streams: tuple[tuple[TapeLine, ...], ...]  # in the order the runner opened them


def load_tape(directory: Path) -> Tape:
    """Read DIR/events.jsonl (and the input rate from DIR/recording.json)."""
    if not directory.is_dir():
        raise ReplayError(f"--replay {directory}: not a folder holding a recording (agent-run --record DIR)")
    path = directory / EVENTS_FILE
    try:
        text = read_user_file(path, limit=MAX_EVENTS_BYTES, what="a recording").decode("utf-8")
    except (OSError, RunnerError, UnicodeDecodeError) as exc:
        raise ReplayError(f"--replay {directory}: cannot read {EVENTS_FILE}: {exc}") from None
    streams: dict[int, list[TapeLine]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            stream, line = _tape_line(raw, f"{path}:{number}")
            streams.setdefault(stream, []).append(line)
    if not streams:
        raise ReplayError(f"{path}: no events recorded")
    return Tape(directory, _input_rate(directory), tuple(tuple(streams[k]) for k in sorted(streams)))


def _tape_line(raw: str, where: str) -> tuple[int, TapeLine]:
    try:
        entry = json.loads(raw)
    except ValueError as exc:
        raise ReplayError(f"{where}:{getattr(exc, 'colno', 1)}: not JSON ({exc})") from None
    if not isinstance(entry, dict):
        raise ReplayError(f"{where}:1: not a JSON object")
    t, stream, direction = entry.get("t"), entry.get("stream"), entry.get("direction")
    if (not isinstance(t, int | float) or not isinstance(stream, int) or isinstance(stream, bool)
            or direction not in ("in", "out")):
        raise ReplayError(f"{where}:1: every line needs t (seconds), stream (a number) and "
                          "direction (in or out)")
    event, error = entry.get("event"), entry.get("error")
    audio = entry.get("audio_bytes", 0)
    return stream, TapeLine(float(t), direction, event if isinstance(event, dict) else None,
                            audio if isinstance(audio, int) else 0, entry.get("accepted") is True,
                            entry.get("end") is True, error if isinstance(error, dict) else None)


def _input_rate(directory: Path) -> int:
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        rate = meta.get("input_sample_rate") if isinstance(meta, dict) else None
    except (OSError, ValueError):
        rate = None
    return rate if isinstance(rate, int) and rate > 0 else 16000


def _reached_service(lines: Sequence[TapeLine]) -> bool:
    """A stream whose request never reached the service (e.g. no network) is not replayed."""
    return any(line.accepted or (line.direction == "out" and line.event is not None)
               or (line.error is not None and line.error.get("kind") in REJECTIONS) for line in lines)


def _rejection(lines: Sequence[TapeLine]) -> Rejection | None:
    """How the service refused the request, when it did so before accepting the stream."""
    if any(line.accepted for line in lines):
        return None
    for line in lines:
        kind = line.error.get("kind") if line.error else None
        if isinstance(kind, str) and kind in REJECTIONS:
            assert line.error is not None
            message = str(line.error.get("message", kind)).removeprefix(f"{kind}: ")
            return Rejection(status=REJECTIONS[kind], error_type=kind, message=message)
    return None


# -- comparison ----------------------------------------------------------------------------------

class IdMap:
    """Recorded ids to live ids, one to one."""

    def __init__(self) -> None:
        self.live: dict[str, str] = {}
        self._recorded: dict[str, str] = {}

    def match(self, recorded: str, live: str) -> bool:
        bound = self.live.get(recorded)
        if bound is not None:
            return bound == live
        if live in self._recorded:
            return False
        self.live[recorded], self._recorded[live] = live, recorded
        return True

    def to_live(self, value: Any) -> Any:
        """`value` (an output event) with every bound recorded id replaced by its live id."""
        if isinstance(value, dict):
            return {k: (self.live.get(v, v) if k in ID_KEYS and isinstance(v, str) else self.to_live(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.to_live(v) for v in value]
        return value


def first_difference(expected: Any, got: Any, ids: IdMap, path: str = "",
                     ignore: Sequence[str] = ()) -> str | None:
    """Where `got` differs from `expected` first, as "at PATH: expected X, got Y"; None if equal.

    Ids (ID_KEYS) are matched through `ids` (binding new ones); JSON held in strings is compared
    as JSON. Paths matching a glob in `ignore` (e.g. "toolResult.content.formattedTime") are not
    compared: values that differ from run to run, such as the time."""
    if ignore and any(fnmatchcase(path, pattern) for pattern in ignore):
        return None
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in expected:
            if ignore and any(fnmatchcase(_join(path, key), pattern) for pattern in ignore):
                continue
            if key not in got:
                return f"at {_join(path, key)}: missing (expected {_short(expected[key])})"
            if key in ID_KEYS and isinstance(expected[key], str) and isinstance(got[key], str):
                if not ids.match(expected[key], got[key]):
                    return (f"at {_join(path, key)}: a different id (the recording's "
                            f"{expected[key][:12]}… was live {ids.live.get(expected[key], '?')[:12]}…, "
                            f"got {got[key][:12]}…)")
                continue
            found = first_difference(expected[key], got[key], ids, _join(path, key), ignore)
            if found is not None:
                return found
        extra = [k for k in got if k not in expected
                 and not any(fnmatchcase(_join(path, k), pattern) for pattern in ignore)]
        if extra:
            return f"at {_join(path, extra[0])}: not in the recording (got {_short(got[extra[0]])})"
        return None
    if isinstance(expected, list) and isinstance(got, list):
        for index, (a, b) in enumerate(zip(expected, got, strict=False)):
            found = first_difference(a, b, ids, f"{path}[{index}]", ignore)
            if found is not None:
                return found
        if len(expected) != len(got):
            return f"at {path}: expected {len(expected)} items, got {len(got)}"
        return None
    if isinstance(expected, str) and isinstance(got, str) and expected != got:
        parsed = _json_pair(expected, got)
        if parsed is not None:
            return first_difference(parsed[0], parsed[1], ids, path, ignore)
        a, b = _around_difference(expected, got)
        return f"at {path}: expected {a}, got {b}"
    if type(expected) is not type(got) or expected != got:
        return f"at {path}: expected {_short(expected)}, got {_short(got)}"
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_pair(a: str, b: str) -> tuple[Any, Any] | None:
    if not (a.lstrip()[:1] in "{[" and b.lstrip()[:1] in "{[" and a.strip() and b.strip()):
        return None
    try:
        pa, pb = json.loads(a), json.loads(b)
    except ValueError:
        return None
    return (pa, pb) if isinstance(pa, dict | list) and isinstance(pb, dict | list) else None


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= SHORT else text[:SHORT - 1] + "…"


def _around_difference(a: str, b: str) -> tuple[str, str]:
    """Both strings cut to the neighbourhood of their first differing character."""
    common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, common - 20)

    def cut(s: str) -> str:
        part = s[start:start + SHORT]
        return ("…" if start else "") + repr(part) + ("…" if start + SHORT < len(s) else "")

    return cut(a), cut(b)


def without_audio(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "content"}


# -- one stream, sans-IO -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Expected:
    """A recorded non-audio input event (or the end of input: name END_OF_INPUT, body None)."""

    name: str
    body: Any
    audio_before: int  # input audio bytes the recording had sent before it
    t: float


@dataclass(frozen=True, slots=True)
class Release:
    """A recorded output (or the stream's end or error) and its gate."""

    line: TapeLine
    inputs_before: int  # non-audio input events (and the end of input) before it
    audio_before: int
    delay: float  # after the input before it (or the stream's start)


@dataclass(frozen=True, slots=True)
class Plan:
    expected: tuple[Expected, ...]
    releases: tuple[Release, ...]
    # The recorded audioInput (without content) in force before each expected event, and at the end.
    audio_templates: tuple[Any, ...]


def plan_stream(lines: Sequence[TapeLine]) -> Plan:
    expected: list[Expected] = []
    releases: list[Release] = []
    templates: list[Any] = []
    audio = 0
    last_input_t = lines[0].t if lines else 0.0
    template: Any = None
    for line in lines:
        if line.direction == "in":
            last_input_t = line.t
            if line.end:
                templates.append(template)
                expected.append(Expected(END_OF_INPUT, None, audio, line.t))
            elif line.name == "audioInput" and isinstance(line.body, dict):
                audio += line.audio_bytes
                template = without_audio(line.body)
            elif line.event is not None:
                templates.append(template)
                expected.append(Expected(line.name, line.body, audio, line.t))
        elif line.event is not None or line.end or line.error is not None:
            releases.append(Release(line, len(expected), audio, max(0.0, line.t - last_input_t)))
    templates.append(template)
    return Plan(tuple(expected), tuple(releases), tuple(templates))


@dataclass(frozen=True, slots=True)
class Tolerance:
    audio_early_s: float = 3.0
    audio_late_s: float = 15.0
    input_timeout_s: float = 60.0
    ignore: tuple[str, ...] = ()  # globs of event paths not compared (first_difference)


@dataclass
class Outgoing:
    """An output due now: an event (ids made live) or the stream's recorded end or error."""

    event: dict[str, Any] | None = None
    end: bool = False
    error: dict[str, Any] | None = None


class StreamReplay:
    """Serves one recorded stream against live input (sans-IO: all times are passed in)."""

    def __init__(self, plan: Plan, *, number: int, now: float, input_rate: int = 16000,
                 tolerance: Tolerance = Tolerance()) -> None:
        self.plan = plan
        self.number = number
        self.ids = IdMap()
        self._bytes_per_s = 2 * input_rate
        self._tolerance = tolerance
        self._count_times = [now]  # [n] = when the n-th non-audio input arrived (0: the start)
        self._audio_totals: list[int] = [0]
        self._audio_times = [now]
        self._forced: tuple[int, float] = (0, now)  # audio gates counted as met at that time
        self._next_release = 0
        self._last_release_at = now
        self._last_input_at = now
        self._inputs_seen = 0  # every input event, audio included (for messages)
        self.closed = False

    @property
    def finished(self) -> bool:
        return self._next_release >= len(self.plan.releases)

    @property
    def _count(self) -> int:
        return len(self._count_times) - 1

    @property
    def _audio(self) -> int:
        return self._audio_totals[-1]

    def receive(self, name: str, body: Any, audio_bytes: int, now: float) -> None:
        """One live input event; raises Difference."""
        self._inputs_seen += 1
        self._last_input_at = now
        if name == "audioInput":
            self._audio_chunk(body, audio_bytes, now)
        else:
            self._compare(name, body, now)

    def input_closed(self, now: float) -> None:
        self._inputs_seen += 1
        self.closed = True
        self._compare(END_OF_INPUT, None, now)

    def due(self, now: float) -> list[Outgoing]:
        """The outputs to send now, in order."""
        out: list[Outgoing] = []
        while self._next_release < len(self.plan.releases):
            at = self._release_at(self.plan.releases[self._next_release])
            if at is None or at > now:
                break
            release = self.plan.releases[self._next_release]
            self._next_release += 1
            self._last_release_at = at
            line = release.line
            out.append(Outgoing(self.ids.to_live(line.event) if line.event is not None else None,
                                line.end, line.error))
        return out

    def next_deadline(self, now: float) -> float:
        """When to look again at the latest (a release due, or the input timeout)."""
        deadline = self._last_input_at + self._tolerance.input_timeout_s
        if self._next_release < len(self.plan.releases):
            at = self._release_at(self.plan.releases[self._next_release])
            if at is not None:
                deadline = min(deadline, at)
        return deadline

    def timed_out(self, now: float) -> bool:
        return not self.closed and now - self._last_input_at >= self._tolerance.input_timeout_s

    # -- internals ---------------------------------------------------------------------------

    def _release_at(self, release: Release) -> float | None:
        if release.inputs_before > self._count:
            return None
        gate = self._count_times[release.inputs_before]
        audio_at = self._audio_time(release.audio_before)
        if audio_at is None:
            return None
        return max(max(gate, audio_at) + release.delay, self._last_release_at)

    def _audio_time(self, total: int) -> float | None:
        """When the live input audio reached `total` bytes (or was let off reaching it)."""
        index = bisect.bisect_left(self._audio_totals, total)
        if index < len(self._audio_totals):
            return self._audio_times[index]
        return self._forced[1] if total <= self._forced[0] else None

    def _audio_chunk(self, body: Any, size: int, now: float) -> None:
        templates = self.plan.audio_templates[self._count:]
        template = next((t for t in templates if t is not None), None)
        if template is None:
            raise self._difference("audioInput", "the recording has no input audio from here on")
        found = first_difference(template, without_audio(body), self.ids, "audioInput")
        if found is not None:
            raise self._difference("audioInput", found)
        self._audio_totals.append(self._audio + size)
        self._audio_times.append(now)
        if self._count < len(self.plan.expected):
            waiting = self.plan.expected[self._count]
            late = self._audio - waiting.audio_before
            if late > self._tolerance.audio_late_s * self._bytes_per_s:
                raise self._difference("audioInput", (
                    f"expected {_describe(waiting)} (recorded after {self._s(waiting.audio_before)} of "
                    f"input audio), still missing after {self._s(self._audio)}"))

    def _compare(self, name: str, body: Any, now: float) -> None:
        if self._count >= len(self.plan.expected):
            raise self._difference(name, f"the recording has no more input events on this stream, "
                                         f"got {name} {_short(body) if body is not None else ''}".rstrip())
        expected = self.plan.expected[self._count]
        if expected.name != name:
            raise self._difference(name, f"expected {_describe(expected)}, got {name}"
                                         + (f" {_short(body)}" if body is not None else ""))
        found = (first_difference(expected.body, body, self.ids, name, self._tolerance.ignore)
                 if body is not None else None)
        if found is not None:
            raise self._difference(name, found)
        self._force_audio_gates(expected, name, now)
        self._count_times.append(now)

    def _force_audio_gates(self, expected: Expected, name: str, now: float) -> None:
        """The runner sent this event with less audio before it than recorded: within the tolerance,
        the outputs recorded before it are due now."""
        short = expected.audio_before - self._audio
        if short <= 0:
            return
        if short > self._tolerance.audio_early_s * self._bytes_per_s:
            raise self._difference(name, (
                f"came after {self._s(self._audio)} of input audio; the recording had "
                f"{self._s(expected.audio_before)} before it"))
        self._forced = (expected.audio_before, now)

    def _difference(self, name: str, detail: str) -> Difference:
        where = f"stream {self.number}, input event #{self._inputs_seen} ({name})"
        return Difference(f"replay: {where}: {detail}")

    def _s(self, audio_bytes: int) -> str:
        return f"{audio_bytes / self._bytes_per_s:.1f} s"


def _describe(expected: Expected) -> str:
    if expected.name == END_OF_INPUT:
        return END_OF_INPUT
    return f"{expected.name} {_short(expected.body)}"


# -- the emulator's handler ----------------------------------------------------------------------

@dataclass
class _Assignment:
    number: int
    lines: tuple[TapeLine, ...]


@dataclass
class ReplayHandler:
    """Plays a Tape for the streams the wire server accepts (a `StreamHandler`)."""

    tape: Tape
    report: Callable[[str], None] | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    clock: Callable[[], float] = time.monotonic
    differences: list[str] = field(default_factory=list)
    streams_served: int = 0

    def __post_init__(self) -> None:
        self._queue = [_Assignment(n, lines) for n, lines in enumerate(self.tape.streams, 1)
                       if _reached_service(lines)]
        self._assigned: dict[str, _Assignment | None] = {}

    def admit(self, request: StreamRequest) -> Rejection | None:
        assignment = self._queue.pop(0) if self._queue else None
        rejection = _rejection(assignment.lines) if assignment is not None else None
        if rejection is None:
            self._assigned[request.request_id] = assignment
        return rejection

    async def handle(self, stream: EmulatorStream) -> None:
        assignment = self._assigned.pop(stream.request.request_id, None)
        self.streams_served += 1
        if assignment is None:
            count = sum(1 for s in self.tape.streams if _reached_service(s))
            await self._fail(stream, f"replay: the runner opened stream {self.streams_served}, but the "
                                     f"recording has {count} stream(s)")
            return
        replay = StreamReplay(plan_stream(assignment.lines), number=assignment.number, now=self.clock(),
                              input_rate=self.tape.input_rate, tolerance=self.tolerance)
        validator = InputValidator(stream.request.model_id)
        inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=INBOX_SIZE)
        events = StreamLog(log, stream.request.request_id[:8])
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(read_into(stream, inbox))
            try:
                await self._serve(stream, replay, validator, inbox, events)
            except Difference as exc:
                await self._fail(stream, exc.message)
            except NovaValidationError as exc:
                await self._fail(stream, exc.message, difference=False)
            finally:
                reader.cancel()
                events.close()
        if not stream.closed:
            await stream.end()

    async def _serve(self, stream: EmulatorStream, replay: StreamReplay, validator: InputValidator,
                     inbox: asyncio.Queue[bytes | None], events: StreamLog) -> None:
        while not stream.closed:
            for out in replay.due(self.clock()):
                if out.event is not None:
                    events.output(out.event)
                if await _send(stream, out, validator):
                    return
            if replay.closed and replay.finished:
                return
            if replay.timed_out(self.clock()):
                await self._fail(stream, INPUT_TIMEOUT, difference=False)
                return
            timeout = max(0.0, replay.next_deadline(self.clock()) - self.clock())
            try:
                payload = await asyncio.wait_for(inbox.get(), timeout)
            except TimeoutError:
                continue
            if payload is None:
                if replay.closed:
                    return  # nothing more will come; the rest of the recording is not due
                replay.input_closed(self.clock())
                continue
            event = validator.check(payload)
            events.input({"event": {event.name: event.body}})
            replay.receive(event.name, event.body, len(event.audio), self.clock())

    async def _fail(self, stream: EmulatorStream, message: str, *, difference: bool = True) -> None:
        if difference:
            self.differences.append(message)
            (self.report or log.error)(message)
        else:
            log.info("replay: %s", message)
        if not stream.closed:
            await stream.send_exception("validationException", message)


async def _send(stream: EmulatorStream, out: Outgoing, validator: InputValidator) -> bool:
    """Send one output; True when the stream is over (its recorded end or error)."""
    if out.event is not None:
        tool_use = out.event.get("event", {}).get("toolUse")
        if isinstance(tool_use, dict) and isinstance(tool_use.get("toolUseId"), str):
            validator.tool_use_issued(tool_use["toolUseId"])
        await stream.send_event(out.event)
        return False
    if out.error is not None:
        kind = str(out.error.get("kind", ""))
        member = kind[:1].lower() + kind[1:]
        if member in EXCEPTION_KINDS:
            message = str(out.error.get("message", kind)).removeprefix(f"{kind}: ")
            await stream.send_exception(member, message)
        else:  # a reset, bytes that were not an event, a dropped connection: the closest is a reset
            await stream.reset()
        return True
    await stream.end()
    return True

