"""`--record DIR`: a transport wrapper that writes down everything that crosses the stream.

Theory of operation
- `RecordingConnector` wraps any Connector (Bedrock or the emulator, reached the same way), and
  each Stream it opens: every input event sent and every output event received is written, with
  its time, to DIR/events.jsonl as it happens. The conversation code does not know it is recorded.
- Only the events are written, never the connector's settings: credentials live in the SDK's
  resolver, not in any event. As a second guard, any line that would contain the value of an AWS
  credential variable of the environment gets it replaced by "[redacted]".
- events.jsonl, one JSON object a line: `t` (seconds since the recording started), `stream` (1 for
  the run's first stream, as in the transcript), `direction` ("in" = sent by the runner, "out" =
  received), then either `event` (the event JSON) or a stream marker: `accepted`, `end` (that side
  ended cleanly) or `error` ({kind, message, retryable}). Output audio stays inline (base64, as
  sent): the replay serves it back. Input audio is not stored in the line (its `content` is "" and
  `audio_bytes` its PCM size), since it is ~30 events a second for the whole run and a replay
  compares only its amount; the audio itself is the left channel of conversation.wav.
- conversation.wav: 16-bit stereo at the higher of the two rates, the user left (from the
  audioInput events), the assistant right (audioOutput events; cut at a barge-in), on one timeline
  (runner.audio.stereo). user.wav: mono at the input rate, the user's audio exactly as sent, chunk
  after chunk (what `--input` needs to replay a microphone session: the same audio, byte for byte,
  under a full-duplex policy). transcript.jsonl: the run's transcript (runner.transcript).
  recording.json: what the files are (format version, rates, agent and model).
- A write that fails (a full disk) never raises into the conversation from the middle of a write:
  the files are left valid (events cut back to whole lines, the WAV's header patched), nothing
  more is written, and the stream's next send or receive raises a non-retryable TransportError
  with the reason, so the run ends with that error.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.audio.resample import Resampler
from runner.audio.stereo import ASSISTANT, USER, GrowingWavFile, StereoTimeline
from runner.errors import RunnerError, TransportError
from runner.files import open_for_writing
from runner.transcript import Transcript
from runner.transports.base import Connector, ConnectorWrapper, Stream

EVENTS_FILE = "events.jsonl"
WAV_FILE = "conversation.wav"
USER_WAV_FILE = "user.wav"
TRANSCRIPT_FILE = "transcript.jsonl"
META_FILE = "recording.json"
FORMAT = "agent-run recording"
VERSION = 1
# Environment variables whose values must never reach a recording.
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")
REDACTED = "[redacted]"
# How far the WAV may lag behind the clock: fewer, larger writes.
WAV_WRITE_EVERY_S = 0.25


class Recording:
    """The files of one recording in `directory`, written as the run goes (see the module doc)."""

    def __init__(self, directory: Path, *, input_rate: int, output_rate: int,
                 labels: Mapping[str, str] | None = None,
                 protected: Sequence[tuple[str, Path]] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.rate = max(input_rate, output_rate)
        self._labels = dict(labels or {})
        self._protected = protected
        self._clock = clock
        self._started = clock()
        self._fd: int | None = None
        self._good_size = 0
        self._wav: GrowingWavFile | None = None
        self._user_wav: GrowingWavFile | None = None
        self._timeline = StereoTimeline(self.rate)
        self._user = Resampler(input_rate, self.rate)
        self._assistant = Resampler(output_rate, self.rate)
        self._assistant_cut = False  # after a barge-in, until the next assistant audio block
        self._wav_until = 0.0
        self._transcript: Transcript | None = None  # copied into the folder at the end
        self.failure: str | None = None
        self._reported = False
        self.events_written = 0

    @property
    def transcript_path(self) -> Path:
        return self.directory / TRANSCRIPT_FILE

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Recording:
        self._check_directory()
        try:
            with contextlib.suppress(FileNotFoundError):  # the transcript is appended to: start afresh
                self.transcript_path.unlink()
            self._write_meta()
            self._fd = open_for_writing(self.directory / EVENTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            self._wav = GrowingWavFile(self.directory / WAV_FILE, self.rate)
            self._user_wav = GrowingWavFile(self.directory / USER_WAV_FILE, self.input_rate, channels=1)
        except OSError as exc:
            self.close()
            raise RunnerError(f"--record {self.directory}: cannot write {exc.filename or 'in it'}: "
                              f"{(exc.strerror or str(exc)).lower()}") from None
        self._started = self._clock()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.close()
        if exc_type is None and self.failure is not None and not self._reported:
            # Failed after the last stream event (the WAV's last frames, the transcript copy):
            # the run must not look successful. An error already on its way is not masked.
            raise RunnerError(self.failure)

    def follow(self, transcript: Transcript, *, copy: bool) -> None:
        """The run's transcript; with `copy` (it is written elsewhere) its entries are saved into
        the folder when the recording closes."""
        self._transcript = transcript if copy else None

    def close(self) -> None:
        if self._transcript is not None:
            self.save_transcript(self._transcript.entries)
            self._transcript = None
        if self._wav is not None and self.failure is None:
            try:
                self._timeline.add(USER, self._timeline.end_s(USER), self._user.flush())
                self._timeline.add(ASSISTANT, self._timeline.end_s(ASSISTANT), self._assistant.flush())
                self._wav.append(self._timeline.take(None))
            except OSError as exc:
                self._failed(WAV_FILE, exc)
        self._close_wavs()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _close_wavs(self) -> None:
        for wav in (self._wav, self._user_wav):
            if wav is not None:
                wav.close()
        self._wav = self._user_wav = None

    def _check_directory(self) -> None:
        where = self.directory
        if where.exists() and not where.is_dir():
            raise RunnerError(f"--record {where}: not a folder (name a folder to write the recording into)")
        files = [where / name for name in (EVENTS_FILE, WAV_FILE, USER_WAV_FILE, TRANSCRIPT_FILE, META_FILE)]
        for flag, path in self._protected:
            if any(_same_path(path, f) for f in files):
                raise RunnerError(f"--record {where} would overwrite {flag} {path}; "
                                  "record into another folder")
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunnerError(f"--record {where}: cannot create the folder: "
                              f"{(exc.strerror or str(exc)).lower()}") from None
        if not os.access(where, os.W_OK | os.X_OK):
            raise RunnerError(f"--record {where}: the folder is not writable")

    def _write_meta(self) -> None:
        meta = {"format": FORMAT, "version": VERSION,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "input_sample_rate": self.input_rate, "output_sample_rate": self.output_rate,
                "wav_sample_rate": self.rate, "wav_channels": {"left": "user", "right": "assistant"},
                "files": {"events": EVENTS_FILE, "audio": WAV_FILE, "user_audio": USER_WAV_FILE,
                          "transcript": TRANSCRIPT_FILE},
                **self._labels}
        path = self.directory / META_FILE
        fd = open_for_writing(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            _write_all(fd, (json.dumps(meta, indent=2) + "\n").encode())
        finally:
            os.close(fd)

    def save_transcript(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Write the run's transcript entries (when the live transcript went elsewhere)."""
        if self.failure is not None:
            return
        data = b"".join(_line(dict(e)) for e in entries)
        try:
            fd = open_for_writing(self.transcript_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            self._failed(TRANSCRIPT_FILE, exc)

    # -- events --------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() - self._started

    def input(self, stream: int, payload: bytes) -> None:
        at = self.now()
        event = _parse(payload)
        line: dict[str, Any] = {"t": round(at, 4), "stream": stream, "direction": "in"}
        audio = _audio(event, "audioInput")
        if audio is not None:
            self._user_audio(audio)
            self._place(USER, at, self._user.process(audio))
            event["event"]["audioInput"]["content"] = ""
            line["audio_bytes"] = len(audio)
        self._write(line, event, payload)

    def output(self, stream: int, payload: bytes) -> None:
        at = self.now()
        event = _parse(payload)
        audio = _audio(event, "audioOutput")
        if audio is not None:
            if not self._assistant_cut:
                self._place(ASSISTANT, at, self._assistant.process(audio))
        elif _is_interruption(event):
            self._timeline.cut(ASSISTANT, at)
            self._assistant_cut = True
        elif _starts_assistant_audio(event):
            self._assistant_cut = False
        self._write({"t": round(at, 4), "stream": stream, "direction": "out"}, event, payload)

    def mark(self, stream: int, direction: str, **marker: Any) -> None:
        """A stream marker: accepted=True, end=True or error={...}."""
        self._write({"t": round(self.now(), 4), "stream": stream, "direction": direction, **marker},
                     None, b"")

    def _user_audio(self, pcm: bytes) -> None:
        if self._user_wav is None:
            return
        try:
            self._user_wav.append(pcm[:len(pcm) - len(pcm) % 2])
        except OSError as exc:
            self._failed(USER_WAV_FILE, exc)

    def _place(self, channel: int, at: float, pcm: bytes) -> None:
        self._timeline.add(channel, at, pcm)
        if self._wav is None or at - self._wav_until < WAV_WRITE_EVERY_S:
            return
        self._wav_until = at
        try:
            self._wav.append(self._timeline.take(at))
        except OSError as exc:
            self._failed(WAV_FILE, exc)

    def _write(self, line: dict[str, Any], event: dict[str, Any] | None, payload: bytes) -> None:
        if self._fd is None:
            return
        if event is not None:
            line["event"] = event
        elif payload:  # not JSON: kept as the bytes received
            line["raw"] = base64.b64encode(payload).decode("ascii")
        data = _redact(_line(line))
        try:
            _write_all(self._fd, data)
            self._good_size += len(data)
            self.events_written += 1
        except OSError as exc:
            self._failed(EVENTS_FILE, exc)

    def _failed(self, name: str, exc: OSError) -> None:
        if self.failure is None:
            self.failure = (f"cannot write the recording {self.directory / name}: "
                            f"{exc.strerror or exc}")
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # only shrinks: works on a full disk
                if os.fstat(fd).st_size > self._good_size:
                    os.ftruncate(fd, self._good_size)
            os.close(fd)
        self._close_wavs()

    def check(self) -> None:
        """Raise the recording's failure as a TransportError that ends the run."""
        if self.failure is not None:
            self._reported = True
            raise TransportError(self.failure, kind="RecordingError", retryable=False)


class RecordingStream:
    """A Stream that writes every event through it to a Recording."""

    def __init__(self, inner: Stream, index: int, recording: Recording) -> None:
        self._inner = inner
        self._index = index
        self._recording = recording
        self._accepted = False
        self._ended = False
        self._input_closed = False

    async def send(self, payload: bytes) -> None:
        if self._accepted:
            # Not before: failing a stream while the SDK is still connecting leaves awscrt's
            # connection future to be cancelled under it (noise on stderr); wait_accepted raises it.
            self._recording.check()
        await self._inner.send(payload)
        self._recording.input(self._index, payload)

    async def wait_accepted(self) -> None:
        try:
            await self._inner.wait_accepted()
        except TransportError as exc:
            self._error(exc)
            raise
        if not self._accepted:
            self._accepted = True
            self._recording.mark(self._index, "out", accepted=True)
        self._recording.check()

    async def receive(self) -> bytes | None:
        self._recording.check()
        try:
            payload = await self._inner.receive()
        except TransportError as exc:
            self._error(exc)
            raise
        if payload is None:
            self._end()
        else:
            self._recording.output(self._index, payload)
        self._recording.check()
        return payload

    async def close_input(self, limit_s: float) -> None:
        await self._inner.close_input(limit_s)
        if not self._input_closed:
            self._input_closed = True
            self._recording.mark(self._index, "in", end=True)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._recording.mark(self._index, "out", end=True)

    def _error(self, exc: TransportError) -> None:
        if not self._ended:
            self._ended = True
            self._recording.mark(self._index, "out", error=error_fields(exc))


class RecordingConnector(ConnectorWrapper):
    """A Connector whose streams are recorded; numbered 1, 2, ... in the order they are opened."""

    def __init__(self, inner: Connector, recording: Recording) -> None:
        super().__init__(inner)
        self._recording = recording
        self._opened = 0

    async def open_stream(self, model_id: str) -> Stream:
        self._recording.check()
        self._opened += 1
        index = self._opened
        try:
            stream = await self._inner.open_stream(model_id)
        except TransportError as exc:
            self._recording.mark(index, "out", error=error_fields(exc))
            raise
        return RecordingStream(stream, index, self._recording)



def error_fields(exc: TransportError) -> dict[str, Any]:
    return {"kind": exc.kind, "message": str(exc), "retryable": exc.retryable}


def _parse(payload: bytes) -> Any:
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return event if isinstance(event, dict) else None


def _body(event: Any, name: str) -> dict[str, Any] | None:
    inner = event.get("event") if isinstance(event, dict) else None
    body = inner.get(name) if isinstance(inner, dict) else None
    return body if isinstance(body, dict) else None


def _audio(event: Any, name: str) -> bytes | None:
    """The PCM of an audioInput/audioOutput event (b"" when its content is not base64)."""
    body = _body(event, name)
    if body is None:
        return None
    content = body.get("content")
    try:
        return base64.b64decode(content, validate=True) if isinstance(content, str) else b""
    except (binascii.Error, ValueError):
        return b""


def _is_interruption(event: Any) -> bool:
    """Nova's barge-in signals: a contentEnd INTERRUPTED or the `{"interrupted": true}` text."""
    end = _body(event, "contentEnd")
    if end is not None:
        return end.get("stopReason") == "INTERRUPTED"
    text = _body(event, "textOutput")
    content = text.get("content") if text is not None else None
    if not isinstance(content, str) or "interrupted" not in content:
        return False
    with contextlib.suppress(ValueError):
        return bool(json.loads(content) == {"interrupted": True})
    return False


def _starts_assistant_audio(event: Any) -> bool:
    start = _body(event, "contentStart")
    return start is not None and start.get("type") == "AUDIO" and start.get("role") == "ASSISTANT"


def _line(entry: dict[str, Any]) -> bytes:
    """One JSON line in UTF-8 (text with lone surrogates has no UTF-8 form: kept as escapes)."""
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(entry, separators=(",", ":")) + "\n").encode("ascii")


def _redact(line: bytes) -> bytes:
    for name in SECRET_VARIABLES:
        value = os.environ.get(name, "")
        if len(value) >= 8 and value.encode() in line:
            line = line.replace(value.encode(), REDACTED.encode())
    return line


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
