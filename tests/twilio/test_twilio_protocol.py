from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.audio.g711 import ulaw_encode
from runner.serve.frontends.twilio_protocol import (
    FRAME_BYTES_PCM,
    AnswerPlayout,
    CallerAudio,
    Connected,
    Dtmf,
    Event,
    Malformed,
    MarkReached,
    MediaStreamProtocol,
    Started,
    Stopped,
    StreamState,
)

START = {
    "event": "start", "sequenceNumber": "1", "streamSid": "MZ0001",
    "start": {"accountSid": "AC0001", "streamSid": "MZ0001", "callSid": "CA0001",
              "tracks": ["inbound"], "customParameters": {"customer": "Ada <&>", "tier": "gold"},
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
}


def frame(msg: dict[str, Any]) -> str:
    return json.dumps(msg)


def started() -> MediaStreamProtocol:
    p = MediaStreamProtocol()
    assert p.receive_text(frame({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == [
        Connected("Call", "1.0.0")]
    [event] = p.receive_text(frame(START))
    assert isinstance(event, Started)
    return p


def media(pcm: bytes, track: str = "inbound") -> str:
    payload = base64.b64encode(ulaw_encode(pcm)).decode()
    return frame({"event": "media", "streamSid": "MZ0001", "sequenceNumber": "2",
                  "media": {"track": track, "chunk": "1", "timestamp": "5", "payload": payload}})


def sent(p: MediaStreamProtocol) -> list[dict[str, Any]]:
    return [json.loads(text) for text in p.data_to_send()]


def tone(ms: int) -> bytes:
    t = np.arange(8 * ms) / 8000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def test_start_gives_ids_and_custom_parameters() -> None:
    p = MediaStreamProtocol()
    [event] = p.receive_text(frame(START))
    assert event == Started(stream_sid="MZ0001", call_sid="CA0001", account_sid="AC0001",
                            custom_parameters={"customer": "Ada <&>", "tier": "gold"}, tracks=("inbound",))
    assert p.state is StreamState.STREAMING
    assert p.stream_sid == "MZ0001"


def test_caller_audio_is_decoded_pcm() -> None:
    p = started()
    pcm = tone(20)
    [event] = p.receive_text(media(pcm))
    assert isinstance(event, CallerAudio)
    assert len(event.pcm) == len(pcm)
    err = np.abs(np.frombuffer(event.pcm, "<i2").astype(int) - np.frombuffer(pcm, "<i2").astype(int))
    assert err.max() < 300
    assert p.receive_text(media(pcm, track="outbound")) == []


def test_dtmf_and_stop() -> None:
    p = started()
    assert p.receive_text(frame({"event": "dtmf", "streamSid": "MZ0001",
                                 "dtmf": {"track": "inbound_track", "digit": "7"}})) == [Dtmf("7")]
    assert p.receive_text(frame({"event": "stop", "streamSid": "MZ0001",
                                 "stop": {"accountSid": "AC0001", "callSid": "CA0001"}})) == [Stopped()]
    assert p.state is StreamState.STOPPED
    assert p.send_audio(tone(40)) == 0
    assert p.data_to_send() == []
    [late] = p.receive_text(media(tone(20)))
    assert isinstance(late, Malformed)


def test_outgoing_audio_is_20ms_frames_then_a_mark() -> None:
    p = started()
    assert p.send_audio(tone(50)) == 320  # two whole frames; 10 ms waits for more
    msgs = sent(p)
    assert [m["event"] for m in msgs] == ["media", "media"]
    assert all(m["streamSid"] == "MZ0001" for m in msgs)
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in msgs)
    assert p.send_audio(tone(5), mark=True) == 160  # the 15 ms tail padded to a frame
    msgs = sent(p)
    assert [m["event"] for m in msgs] == ["media", "mark"]
    assert msgs[1]["mark"]["name"] == "a1"
    assert p.stats.sent_ms == 60


def test_marks_tell_what_was_heard_and_clear_what_was_cut() -> None:
    p = started()
    p.send_audio(tone(100), mark=True)
    p.send_audio(tone(200), mark=True)
    p.send_audio(tone(300), mark=True)
    names = [m["mark"]["name"] for m in sent(p) if m["event"] == "mark"]
    assert names == ["a1", "a2", "a3"]
    assert p.receive_text(frame({"event": "mark", "streamSid": "MZ0001", "mark": {"name": "a1"}})) == [
        MarkReached("a1", heard=True)]
    assert p.stats.heard_ms == 100
    assert p.unconfirmed_ms() == 500
    p.clear()
    assert sent(p) == [{"event": "clear", "streamSid": "MZ0001"}]
    assert p.stats.cut_ms == 500
    assert p.unconfirmed_ms() == 0
    # Twilio echoes the outstanding marks after a clear: they were not heard.
    for name in ("a2", "a3"):
        assert p.receive_text(frame({"event": "mark", "mark": {"name": name}})) == [MarkReached(name, False)]
    assert p.stats.heard_ms == 100
    p.send_audio(tone(40), mark=True)
    p.data_to_send()
    # A later mark confirms all before it (a skipped echo is not double counted).
    assert p.receive_text(frame({"event": "mark", "mark": {"name": "a4"}})) == [MarkReached("a4", True)]
    assert p.stats.heard_ms == 140
    assert p.stats.clears == 1


def mark(name: str) -> str:
    return frame({"event": "mark", "streamSid": "MZ0001", "mark": {"name": name}})


def test_each_answer_gets_its_playout_heard_cut_or_ended_by_the_call() -> None:
    p = started()
    p.send_audio(tone(1000))  # an answer: a second, a mid-answer mark, then 500 ms more and its end
    p.send_mark()
    p.send_audio(tone(500), mark=True)
    assert [m["mark"]["name"] for m in sent(p) if m["event"] == "mark"] == ["a1", "a2"]
    p.receive_text(mark("a1"))
    assert p.playouts() == []  # only part of it confirmed so far
    p.receive_text(mark("a2"))
    assert p.playouts() == [AnswerPlayout(sent_ms=1500, heard_ms=1500, cut_ms=0, how="played")]
    # The next answer: 600 ms confirmed, then a barge-in cuts the remaining 400 ms.
    p.send_audio(tone(600))
    p.send_mark()
    p.send_audio(tone(400))
    p.receive_text(mark("a3"))
    p.clear()
    assert p.playouts() == [AnswerPlayout(sent_ms=1000, heard_ms=600, cut_ms=400, how="cut")]
    # A third, still playing when the call ends: what was confirmed is heard, the rest unknown.
    p.send_audio(tone(300))
    p.send_mark()
    p.send_audio(tone(200), mark=True)
    p.receive_text(mark("a4"))
    p.finish()
    assert p.playouts() == [AnswerPlayout(sent_ms=500, heard_ms=300, cut_ms=0, how="call ended")]
    p.finish()
    assert p.playouts() == []  # nothing is reported twice


def test_an_answer_ending_on_a_mark_is_not_marked_twice() -> None:
    p = started()
    p.send_audio(tone(1000))
    p.send_mark()
    p.send_audio(b"", mark=True)  # the answer ended exactly on the mark just sent
    assert [m["event"] for m in sent(p)].count("mark") == 1
    p.receive_text(mark("a1"))
    assert p.playouts() == [AnswerPlayout(sent_ms=1000, heard_ms=1000, cut_ms=0, how="played")]


def test_partial_frame_is_dropped_by_clear() -> None:
    p = started()
    p.send_audio(tone(30))
    p.clear()
    p.data_to_send()
    p.send_audio(tone(10))
    assert p.data_to_send() == []  # only 10 ms, not 10 + the dropped 10


def test_nothing_sent_before_start() -> None:
    p = MediaStreamProtocol()
    assert p.send_audio(tone(100), mark=True) == 0
    p.clear()
    assert p.data_to_send() == []


@pytest.mark.parametrize(("text", "reason"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"event": "hello"}', "unknown event"),
    ('{"event": 5}', "unknown event"),
    ('{"event": "media", "media": {"payload": "AAAA"}}', "before start"),
    ('{"event": "dtmf", "dtmf": {"digit": "7"}}', "before start"),
    ('{"event": "start", "start": {}}', "streamSid"),
    ('{"event": "start", "streamSid": "MZ1", "start": {}}', "callSid"),
    ('{"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", "customParameters": [1]}}',
     "customParameters"),
    ('{"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", "customParameters": {"a": {}}}}',
     "not a string"),
    ('{"event": "start", "streamSid": "../../x", "start": {"callSid": "CA1"}}', "streamSid"),
    ('{"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", '
     '"mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}}}', "unsupported media format"),
    ("[" * 100_000, "too large"),
    ("[" * 10_000 + "]" * 10_000, "not JSON"),
])
def test_malformed_frames_are_reported_never_raised(text: str, reason: str) -> None:
    p = MediaStreamProtocol()
    [event] = p.receive_text(text)
    assert isinstance(event, Malformed)
    assert reason in event.reason
    assert p.state is StreamState.CONNECTING
    assert p.stats.malformed == 1


@pytest.mark.parametrize("msg", [
    {"event": "media", "media": {"payload": "!!!not base64"}},
    {"event": "media", "media": {"payload": "A" * 100_000}},
    {"event": "media", "media": "x"},
    {"event": "media"},
    {"event": "dtmf", "dtmf": {"digit": "77"}},
    {"event": "dtmf", "dtmf": {"digit": None}},
    {"event": "mark", "mark": {"name": "never-sent"}},
    {"event": "mark", "mark": {}},
    START,
])
def test_malformed_after_start_changes_nothing(msg: dict[str, Any]) -> None:
    p = started()
    [event] = p.receive_text(frame(msg))
    assert isinstance(event, Malformed)
    assert p.state is StreamState.STREAMING
    assert p.stream_sid == "MZ0001"


def test_binary_frames_are_malformed() -> None:
    [event] = MediaStreamProtocol().receive_binary(b"\x00" * 10)
    assert isinstance(event, Malformed)


def test_random_garbage_never_raises() -> None:
    rng = np.random.default_rng(7)
    p = started()
    for _ in range(2000):
        n = int(rng.integers(0, 200))
        text = bytes(rng.integers(32, 127, n, dtype=np.uint8)).decode()
        for event in p.receive_text(text) + p.receive_text('{"event":"media","media":' + text + "}"):
            assert isinstance(event, Malformed | CallerAudio)
    assert FRAME_BYTES_PCM == 320


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
_EVENT = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", "other"])


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.fixed_dictionaries({"event": _EVENT}, optional={
    "streamSid": _JSON, "start": _JSON, "media": _JSON, "dtmf": _JSON, "mark": _JSON}), max_size=8))
def test_any_sequence_of_event_shaped_frames_never_raises(frames: list[dict[str, Any]]) -> None:
    p = MediaStreamProtocol()
    for msg in frames:
        for event in p.receive_text(json.dumps(msg)):
            assert isinstance(event, Event)
        p.send_audio(tone(30), mark=True)
        p.clear()
        for text in p.data_to_send():
            assert json.loads(text)["streamSid"] == p.stream_sid


def test_the_mark_after_the_last_audio_is_named() -> None:
    proto = MediaStreamProtocol()
    proto.receive_text(json.dumps(START))
    assert proto.mark_after_audio() is None
    proto.send_audio(bytes(FRAME_BYTES_PCM))
    assert proto.mark_after_audio() is None  # audio, no mark after it yet
    name = proto.send_mark()
    assert proto.mark_after_audio() == name
    proto.send_audio(bytes(FRAME_BYTES_PCM // 2), mark=True)  # a tail, padded, then a new mark
    after = proto.mark_after_audio()
    assert after is not None and after != name



def test_answers_queued_back_to_back_are_told_apart_by_a_clear_and_by_the_end_of_the_call() -> None:
    p = started()
    p.send_audio(tone(1000))
    p.send_mark()  # a1 at 1000 ms
    p.send_audio(b"", mark=True)  # the first answer ends on it
    p.send_audio(tone(800), mark=True)  # a second answer, queued behind it: a2 at 1800 ms
    p.send_audio(tone(400))  # a third, being sent
    p.receive_text(mark("a1"))
    assert p.playouts() == [AnswerPlayout(sent_ms=1000, heard_ms=1000, cut_ms=0, how="played")]
    p.clear()  # the barge-in: the second answer and the third are each cut
    assert p.playouts() == [AnswerPlayout(sent_ms=800, heard_ms=0, cut_ms=800, how="cut"),
                            AnswerPlayout(sent_ms=400, heard_ms=0, cut_ms=400, how="cut")]
    assert p.stats.cut_ms == 1200
    # Two more back to back, the first partly confirmed, when the call ends.
    p.send_audio(tone(600))
    p.send_mark()  # a3 at 600 ms of it
    p.send_audio(tone(400), mark=True)  # a4: the first of the two ends (1000 ms)
    p.send_audio(tone(500), mark=True)  # a5: the second (500 ms)
    p.receive_text(mark("a3"))
    p.finish()
    assert p.playouts() == [AnswerPlayout(sent_ms=1000, heard_ms=600, cut_ms=0, how="call ended"),
                            AnswerPlayout(sent_ms=500, heard_ms=0, cut_ms=0, how="call ended")]
