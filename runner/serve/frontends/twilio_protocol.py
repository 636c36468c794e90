"""Twilio Media Streams (bidirectional, `<Connect><Stream>`) as a sans-IO state machine.

Theory of operation
-------------------
No I/O here: the WebSocket adapter feeds each incoming text frame to `receive_text()` and gets
typed events back; what the server wants to say (`send_audio`, `send_mark`, `clear`) is queued as
JSON text frames it collects with `data_to_send()` and writes to the socket.

Twilio → server: `connected`, `start` (streamSid, callSid, customParameters, mediaFormat),
`media` (base64 μ-law, 8 kHz, 20 ms a frame), `dtmf`, `mark` (the audio sent before a mark has
played, or a `clear` dropped it), `stop`. Server → Twilio: `media`, `mark`, `clear`.

What the caller heard: assistant audio goes out in 20 ms frames; after each piece of it
(`send_audio(..., mark=True)`) the protocol sends a mark named `a<N>` and remembers how much audio
had been sent by then. When Twilio echoes a mark, everything up to it has played. A `clear`
(barge-in) drops Twilio's buffer; Twilio then echoes the outstanding marks too, and those count as
cut, not heard. `heard_ms` / `cut_ms` are what the transcript and metrics report.

Per answer: the sink marks the end of each burst of speech (an answer) with `send_audio(...,
mark=True)`. When that mark comes back, the answer was heard in full; a clear cuts it (what its
marks had confirmed is heard, the rest cut). Either way an `AnswerPlayout` is queued for
`playouts()`; `finish()` (the call is over) closes an answer still playing, its unconfirmed audio
counted as neither. Answers queued back to back are still told apart then: the end mark of each
says where it ended. The adapter writes each as a transcript `heard` entry.

Everything that arrives is untrusted: a frame that is not JSON, too big, of an unknown event, or
missing fields becomes a `Malformed` event (with a short reason) and changes nothing else; the
adapter logs it (rate-limited) and may end the call after too many. Nothing here raises on input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from runner.audio.g711 import ulaw_decode, ulaw_encode

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES_ULAW = SAMPLE_RATE * FRAME_MS // 1000  # 160 μ-law bytes = 20 ms
FRAME_BYTES_PCM = FRAME_BYTES_ULAW * 2
# A media frame is ~300 bytes; start with many custom parameters a few KB. Anything far larger is
# not Twilio.
MAX_FRAME_CHARS = 64 * 1024
MAX_MEDIA_ULAW = 8000  # one second in one media frame is already implausible
MAX_PARAMETERS = 64
MAX_PARAMETER_CHARS = 1024
DTMF_DIGITS = frozenset("0123456789*#ABCD")
_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StreamState(Enum):
    CONNECTING = "connecting"  # the socket is open; no `start` yet
    STREAMING = "streaming"  # `start` seen: audio flows both ways
    STOPPED = "stopped"  # `stop` seen (the call hung up): nothing more is sent


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Started:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: Mapping[str, str]
    tracks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """The caller's speech: 16-bit little-endian mono PCM at 8 kHz."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class MarkReached:
    """Twilio reached mark `name`: `heard` if the audio before it played, False if a clear cut it."""

    name: str
    heard: bool


@dataclass(frozen=True, slots=True)
class Stopped:
    pass


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that was ignored, and why (no frame content: it may be anything)."""

    reason: str


Event = Connected | Started | CallerAudio | Dtmf | MarkReached | Stopped | Malformed


@dataclass(frozen=True, slots=True)
class AnswerPlayout:
    """What the caller heard of one answer (a burst of assistant speech), in milliseconds."""

    sent_ms: float
    heard_ms: float  # confirmed played by marks
    cut_ms: float  # dropped by a clear (barge-in) before it played
    how: str  # "played" (all heard), "cut" (a barge-in), "call ended" (hung up while it played)


@dataclass(slots=True)
class _Mark:
    name: str
    sent_ulaw: int  # audio bytes sent before this mark (cumulative)
    answer_end: bool = False  # the mark after an answer's last audio


@dataclass(slots=True)
class PlayoutStatistics:
    sent_ms: float = 0.0  # assistant audio sent to Twilio
    heard_ms: float = 0.0  # of it, confirmed played by a mark
    cut_ms: float = 0.0  # of it, dropped by a clear (barge-in) before it played
    clears: int = 0
    marks_sent: int = 0
    malformed: int = 0
    dtmf_digits: int = 0


def _ms(ulaw_bytes: int) -> float:
    return ulaw_bytes * 1000 / SAMPLE_RATE


class MediaStreamProtocol:
    """One Media Streams connection, server side (see the module docstring)."""

    def __init__(self) -> None:
        self.state = StreamState.CONNECTING
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.stats = PlayoutStatistics()
        self._out: list[str] = []
        self._partial = b""  # PCM shorter than a frame, waiting for the rest
        self._sent_ulaw = 0  # assistant audio sent, in μ-law bytes
        self._accounted_ulaw = 0  # of it, already counted as heard or cut
        self._marks: deque[_Mark] = deque()  # sent, not yet echoed
        self._cut: dict[str, int] = {}  # marks outstanding at a clear: name -> sent_ulaw
        self._mark_seq = 0
        self._answer_from = 0  # sent_ulaw where the answer now playing began
        self._answer_heard = 0  # of it, μ-law bytes confirmed played
        self._playouts: list[AnswerPlayout] = []

    # --- incoming --------------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[Event]:
        """Parse one text frame from Twilio into events (a `Malformed` one for anything wrong)."""
        if len(text) > MAX_FRAME_CHARS:
            return [self._malformed(f"frame of {len(text)} characters is too large")]
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            return [self._malformed("frame is not JSON")]
        if not isinstance(msg, dict):
            return [self._malformed("frame is not a JSON object")]
        kind = msg.get("event")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return [self._malformed(f"unknown event {str(kind)[:32]!r}")]
        if self.state is StreamState.STOPPED:
            return [self._malformed(f"{kind!r} after stop")]
        try:
            return handler(self, msg)
        except _Bad as exc:
            return [self._malformed(f"{kind}: {exc}")]

    def receive_binary(self, data: bytes) -> list[Event]:
        return [self._malformed(f"binary frame of {len(data)} bytes (Media Streams is text only)")]

    def _malformed(self, reason: str) -> Malformed:
        self.stats.malformed += 1
        return Malformed(reason)

    def _on_connected(self, msg: dict[str, Any]) -> list[Event]:
        return [Connected(protocol=_opt_str(msg, "protocol"), version=_opt_str(msg, "version"))]

    def _on_start(self, msg: dict[str, Any]) -> list[Event]:
        if self.state is not StreamState.CONNECTING:
            raise _Bad("a second start")
        start = _obj(msg, "start")
        stream_sid = _sid(msg.get("streamSid", start.get("streamSid")), "streamSid")
        call_sid = _sid(start.get("callSid"), "callSid")
        account_sid = _sid(start.get("accountSid", "unknown"), "accountSid")
        fmt = start.get("mediaFormat")
        if isinstance(fmt, dict):
            encoding, rate = fmt.get("encoding"), fmt.get("sampleRate")
            if encoding not in (None, "audio/x-mulaw") or rate not in (None, SAMPLE_RATE, str(SAMPLE_RATE)):
                raise _Bad(f"unsupported media format {str(encoding)[:32]} at {str(rate)[:8]} Hz")
        params = start.get("customParameters", {})
        if not isinstance(params, dict) or len(params) > MAX_PARAMETERS:
            raise _Bad("customParameters is not a small object")
        custom: dict[str, str] = {}
        for key, value in params.items():
            if not isinstance(value, str | int | float | bool) or isinstance(value, bool):
                raise _Bad("a custom parameter is not a string")
            text = str(value)
            if len(key) > MAX_PARAMETER_CHARS or len(text) > MAX_PARAMETER_CHARS:
                raise _Bad("a custom parameter is too long")
            custom[key] = text
        tracks = start.get("tracks", [])
        track_names = tuple(t for t in tracks if isinstance(t, str))[:4] if isinstance(tracks, list) else ()
        self.state = StreamState.STREAMING
        self.stream_sid, self.call_sid = stream_sid, call_sid
        return [Started(stream_sid=stream_sid, call_sid=call_sid, account_sid=account_sid,
                        custom_parameters=custom, tracks=track_names)]

    def _on_media(self, msg: dict[str, Any]) -> list[Event]:
        self._require_streaming()
        media = _obj(msg, "media")
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            return []  # only the caller's side is ours to hear
        payload = media.get("payload")
        if not isinstance(payload, str) or len(payload) > MAX_MEDIA_ULAW * 4 // 3 + 4:
            raise _Bad("payload is missing or too large")
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _Bad("payload is not base64") from None
        return [CallerAudio(ulaw_decode(ulaw))] if ulaw else []

    def _on_dtmf(self, msg: dict[str, Any]) -> list[Event]:
        self._require_streaming()
        digit = _obj(msg, "dtmf").get("digit")
        if not isinstance(digit, str) or digit not in DTMF_DIGITS:
            raise _Bad("digit is not one of 0-9 * # A-D")
        self.stats.dtmf_digits += 1
        return [Dtmf(digit)]

    def _on_mark(self, msg: dict[str, Any]) -> list[Event]:
        self._require_streaming()
        name = _obj(msg, "mark").get("name")
        if not isinstance(name, str):
            raise _Bad("mark has no name")
        if name in self._cut:
            del self._cut[name]
            return [MarkReached(name, heard=False)]
        # Marks come back in order: this one and any earlier ones still outstanding have played.
        if not any(m.name == name for m in self._marks):
            raise _Bad("a mark this server did not send")
        while self._marks:
            mark = self._marks.popleft()
            self.stats.heard_ms += _ms(mark.sent_ulaw - self._accounted_ulaw)
            self._answer_heard += mark.sent_ulaw - self._accounted_ulaw
            self._accounted_ulaw = mark.sent_ulaw
            if mark.answer_end:
                self._end_answer(mark.sent_ulaw, cut=0, how="played")
            if mark.name == name:
                break
        return [MarkReached(name, heard=True)]

    def _end_answer(self, until_ulaw: int, *, cut: int, how: str) -> None:
        sent = until_ulaw - self._answer_from
        if sent > 0:
            self._playouts.append(AnswerPlayout(sent_ms=_ms(sent), heard_ms=_ms(self._answer_heard),
                                                cut_ms=_ms(cut), how=how))
        self._answer_from, self._answer_heard = until_ulaw, 0

    def _on_stop(self, msg: dict[str, Any]) -> list[Event]:
        self.state = StreamState.STOPPED
        self._partial = b""
        return [Stopped()]

    def _require_streaming(self) -> None:
        if self.state is not StreamState.STREAMING:
            raise _Bad("before start")

    # --- outgoing --------------------------------------------------------------------------------

    @property
    def can_send(self) -> bool:
        return self.state is StreamState.STREAMING

    def send_audio(self, pcm: bytes, *, mark: bool = False) -> int:
        """Queue assistant audio (16-bit mono PCM at 8 kHz) as 20 ms media frames.

        A tail shorter than a frame waits for the next call; `mark=True` pads it with silence and
        sends it now, followed by a mark. Returns the μ-law bytes queued (0 before start or after
        stop, when audio has nowhere to go).
        """
        if not self.can_send:
            return 0
        data = self._partial + pcm
        whole = len(data) - len(data) % FRAME_BYTES_PCM
        self._partial = data[whole:]
        if mark and self._partial:
            whole_data = data[:whole] + self._partial + bytes(FRAME_BYTES_PCM - len(self._partial))
            self._partial = b""
        else:
            whole_data = data[:whole]
        ulaw = ulaw_encode(whole_data)
        for start in range(0, len(ulaw), FRAME_BYTES_ULAW):
            payload = base64.b64encode(ulaw[start:start + FRAME_BYTES_ULAW]).decode()
            self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})
        self._sent_ulaw += len(ulaw)
        self.stats.sent_ms += _ms(len(ulaw))
        if mark and self._sent_ulaw > self._answer_from:
            if self._marks and self._marks[-1].sent_ulaw == self._sent_ulaw:
                self._marks[-1].answer_end = True  # a mark already follows the last audio
            else:
                self.send_mark(answer_end=True)
        return len(ulaw)

    def send_mark(self, *, answer_end: bool = False) -> str:
        """Queue a mark after the audio sent so far (`answer_end`: it ends an answer); returns its name."""
        self._mark_seq += 1
        name = f"a{self._mark_seq}"
        if self.can_send:
            self._marks.append(_Mark(name, self._sent_ulaw, answer_end))
            self.stats.marks_sent += 1
            self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
        return name

    def mark_after_audio(self) -> str | None:
        """The outstanding mark that follows the last audio sent, if there is one."""
        if self._marks and self._marks[-1].sent_ulaw == self._sent_ulaw:
            return self._marks[-1].name
        return None

    def clear(self) -> None:
        """Barge-in: Twilio drops the audio it holds. Outstanding marks will echo back as cut."""
        self._partial = b""
        if not self.can_send:
            return
        self._end_unconfirmed(how="cut", cut=True)
        for mark in self._marks:
            self._cut[mark.name] = mark.sent_ulaw
        self._marks.clear()
        self.stats.cut_ms += _ms(self._sent_ulaw - self._accounted_ulaw)
        self._accounted_ulaw = self._sent_ulaw
        self.stats.clears += 1
        self._send({"event": "clear", "streamSid": self.stream_sid})

    def finish(self) -> None:
        """The call is over: answers still playing are closed (their unconfirmed audio not counted)."""
        self._end_unconfirmed(how="call ended", cut=False)

    def _end_unconfirmed(self, *, how: str, cut: bool) -> None:
        # Every answer not yet confirmed ends now, each on its own: those queued back to back whose
        # end marks are still out (each mark says where its answer ended), then the one being sent.
        # What no mark confirmed is cut (a clear), or counted as neither (the call ended).
        ends = [m.sent_ulaw for m in self._marks if m.answer_end] + [self._sent_ulaw]
        for until in ends:
            unconfirmed = until - max(self._answer_from, self._accounted_ulaw)
            self._end_answer(until, cut=max(0, unconfirmed) if cut else 0, how=how)

    def playouts(self) -> list[AnswerPlayout]:
        """Answers whose playout is known since the last call (emptied)."""
        out, self._playouts = self._playouts, []
        return out

    def unconfirmed_ms(self) -> float:
        """Audio sent that no mark has confirmed yet (an upper bound of what Twilio still holds)."""
        return _ms(self._sent_ulaw - self._accounted_ulaw)

    def data_to_send(self) -> list[str]:
        """The text frames to write to the socket now, in order (the queue is emptied)."""
        out, self._out = self._out, []
        return out

    def _send(self, msg: dict[str, Any]) -> None:
        self._out.append(json.dumps(msg, separators=(",", ":")))


class _Bad(Exception):
    """A frame's content is wrong (turned into a Malformed event at the boundary)."""


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise _Bad(f"{key!r} is not an object")
    return value


def _opt_str(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key, "")
    return value[:64] if isinstance(value, str) else ""


def _sid(value: object, name: str) -> str:
    if not isinstance(value, str) or not _SID.match(value):
        raise _Bad(f"{name} is missing or not an id")
    return value


_HANDLERS = {
    "connected": MediaStreamProtocol._on_connected,
    "start": MediaStreamProtocol._on_start,
    "media": MediaStreamProtocol._on_media,
    "dtmf": MediaStreamProtocol._on_dtmf,
    "mark": MediaStreamProtocol._on_mark,
    "stop": MediaStreamProtocol._on_stop,
}
