"""`--record DIR` below the CLI: the recording wrapper around a Stream writes what crosses it, keeps
audio sensible, never writes a credential, refuses bad folders and stops cleanly on a full disk."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from runner.errors import RunnerError, TransportError
from runner.transcript import Transcript
from runner.transports.base import ConnectionInfo
from runner.transports.recording import Recording, RecordingConnector


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeStream:
    """Stands in for the SDK's stream: outputs from a list, inputs kept."""

    def __init__(self, outputs: list[bytes | TransportError | None]) -> None:
        self.outputs = outputs
        self.sent: list[bytes] = []

    async def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    async def wait_accepted(self) -> None:
        return None

    async def receive(self) -> bytes | None:
        item = self.outputs.pop(0)
        if isinstance(item, TransportError):
            raise item
        return item

    async def close_input(self, limit_s: float) -> None:
        return None

    async def aclose(self) -> None:
        return None


class FakeConnector:
    info = ConnectionInfo("us-east-1", "https://example", "environment", None)

    def __init__(self, streams: list[FakeStream]) -> None:
        self.streams = streams

    async def open_stream(self, model_id: str) -> FakeStream:
        return self.streams.pop(0)

    async def refresh_credentials(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def event(name: str, **body: object) -> bytes:
    return json.dumps({"event": {name: body}}).encode()


def pcm(frames: int, value: int) -> str:
    return base64.b64encode(np.full(frames, value, dtype="<i2").tobytes()).decode()


def lines(folder: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]


def test_every_event_is_written_with_its_time_and_audio_goes_to_the_stereo_wav(tmp_path: Path) -> None:
    clock = Clock()
    answer = event("audioOutput", content=pcm(2400, 2000))
    outputs: list[bytes | TransportError | None] = [
        answer,
        event("contentEnd", type="AUDIO", stopReason="END_TURN"), None]
    inner = FakeStream(outputs)

    async def run() -> None:
        with Recording(tmp_path / "rec", input_rate=16000, output_rate=24000, clock=clock) as recording:
            stream = await RecordingConnector(FakeConnector([inner]), recording).open_stream("m")
            await stream.wait_accepted()
            clock.now = 0.5
            await stream.send(event("audioInput", promptName="p", contentName="a", content=pcm(1600, 1000)))
            clock.now = 1.0
            while await stream.receive() is not None:
                pass
            await stream.close_input(1.0)

    asyncio.run(run())
    written = lines(tmp_path / "rec")
    assert [(x["t"], x["direction"]) for x in written] == [(0.0, "out"), (0.5, "in"), (1.0, "out"),
                                                           (1.0, "out"), (1.0, "out"), (1.0, "in")]
    assert written[0]["accepted"] is True and written[4]["end"] is True and written[5]["end"] is True
    assert written[1]["audio_bytes"] == 3200
    assert written[1]["event"] == {"event": {"audioInput": {"promptName": "p", "contentName": "a",
                                                            "content": ""}}}
    assert written[2]["event"] == json.loads(answer)  # output audio inline, as received
    with wave.open(str(tmp_path / "rec" / "conversation.wav")) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 24000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left, right = frames[:, 0], frames[:, 1]
    # The user's 100 ms at 0.5 s (resampled to 24 kHz), the assistant's 100 ms at 1.0 s.
    assert abs(np.median(left[12100:14300]) - 1000) < 50 and np.abs(left[:11000]).max() == 0
    assert abs(np.median(right[24100:26300]) - 2000) < 50 and np.abs(right[:23900]).max() == 0


def test_credentials_of_the_environment_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Sup3rSecretKeyValue")
    inner = FakeStream([event("textOutput", content="my key is Sup3rSecretKeyValue"), None])

    async def run() -> None:
        with Recording(tmp_path, input_rate=16000, output_rate=16000) as recording:
            stream = RecordingConnector(FakeConnector([inner]), recording)
            opened = await stream.open_stream("m")
            await opened.receive()

    asyncio.run(run())
    text = (tmp_path / "events.jsonl").read_text()
    assert "Sup3rSecretKeyValue" not in text and "my key is [redacted]" in text


def test_a_file_or_an_unwritable_folder_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "file"
    taken.write_text("x")
    with pytest.raises(RunnerError, match=r"not a folder"), Recording(taken, input_rate=1, output_rate=1):
        pass
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as a user who can write anywhere (root): permissions are not enforced")
    with pytest.raises(RunnerError, match=r"not writable"), Recording(locked, input_rate=1, output_rate=1):
        pass


def test_the_run_inputs_are_never_overwritten(tmp_path: Path) -> None:
    question = tmp_path / "conversation.wav"
    question.write_bytes(b"RIFF")
    with pytest.raises(RunnerError, match=r"would overwrite --input"), \
            Recording(tmp_path, input_rate=1, output_rate=1, protected=[("--input", question)]):
        pass
    assert question.read_bytes() == b"RIFF"


def test_a_full_disk_keeps_the_files_valid_and_ends_the_stream(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").symlink_to("/dev/full")
    inner = FakeStream([event("textOutput", content="hi"), event("textOutput", content="again")])

    async def run() -> None:
        with Recording(tmp_path, input_rate=16000, output_rate=16000) as recording:
            stream = await RecordingConnector(FakeConnector([inner]), recording).open_stream("m")
            with pytest.raises(TransportError) as caught:
                await stream.wait_accepted()  # the "accepted" marker is the first write
            assert caught.value.kind == "RecordingError" and not caught.value.retryable
            assert str(caught.value) == (f"cannot write the recording {tmp_path / 'events.jsonl'}: "
                                         "No space left on device")
            with pytest.raises(TransportError):
                await stream.send(event("sessionEnd"))
            assert inner.sent == []

    asyncio.run(run())


def test_a_transcript_written_elsewhere_is_copied_in(tmp_path: Path) -> None:
    with Recording(tmp_path / "rec", input_rate=1, output_rate=1) as recording, \
            Transcript(tmp_path / "elsewhere.jsonl") as transcript:
        recording.follow(transcript, copy=True)
        transcript.write("user", text="hello")
    copied = [json.loads(x) for x in (tmp_path / "rec" / "transcript.jsonl").read_text().splitlines()]
    assert [(e["type"], e["text"]) for e in copied] == [("user", "hello")]


def test_a_failure_after_the_last_event_is_raised_when_the_recording_closes(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match=r"cannot write the recording .*transcript.jsonl: No space left"), \
            Recording(tmp_path, input_rate=1, output_rate=1) as recording, \
            Transcript(None) as transcript:
        (tmp_path / "transcript.jsonl").symlink_to("/dev/full")  # the disk is full by the end
        recording.follow(transcript, copy=True)
        transcript.write("user", text="hello")
