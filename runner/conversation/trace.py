"""-v and --debug: every event sent and received, audio summed up instead of chunk by chunk."""

from __future__ import annotations

import re

from runner.audio.base import AudioFormat
from runner.console import Console
from runner.protocol.events import AudioOutput, ContentEnd, ContentStart, OutputEvent, TextOutput, ToolUse

# -v sums up the microphone audio sent in one line per this much audio.
AUDIO_TRACE_EVERY_MS = 5000


class SentTrace:
    """Input events as they are written to the stream (only built when the console is verbose)."""

    def __init__(self, console: Console, chunk_ms: int) -> None:
        self._console = console
        self._chunk_ms = chunk_ms
        self._audio_chunks = 0

    def __call__(self, payload: bytes) -> None:
        name = event_name(payload)
        if name != "audioInput":
            self._console.raw("->", name)
            return
        self._console.raw("->", f"audioInput {len(payload)} bytes", chunk=True)
        self._audio_chunks += 1
        if self._audio_chunks * self._chunk_ms >= AUDIO_TRACE_EVERY_MS:
            self._console.raw("->", f"audioInput x{self._audio_chunks} "
                                    f"({self._audio_chunks * self._chunk_ms / 1000:.1f} s)")
            self._audio_chunks = 0


class ReceivedTrace:
    """Output events as they arrive; an answer's audio is one line when its block ends."""

    def __init__(self, console: Console, fmt: AudioFormat) -> None:
        self._console = console
        self._fmt = fmt
        self._audio_chunks = 0
        self._audio_bytes = 0

    def __call__(self, event: OutputEvent) -> None:
        if isinstance(event, AudioOutput):
            self._console.raw("<-", summary(event), chunk=True)
            self._audio_chunks += 1
            self._audio_bytes += len(event.pcm)
            return
        if isinstance(event, ContentEnd) and event.type.value == "AUDIO" and self._audio_chunks:
            seconds = self._fmt.duration_ms(self._audio_bytes) / 1000
            self._console.raw("<-", f"audioOutput x{self._audio_chunks} ({seconds:.1f} s)")
            self._audio_chunks = self._audio_bytes = 0
        self._console.raw("<-", summary(event))


_EVENT_NAME = re.compile(rb'"event"\s*:\s*\{\s*"(\w+)"')


def event_name(payload: bytes) -> str:
    """The name of an input event from its JSON bytes (cheap: only the first bytes are looked at)."""
    match = _EVENT_NAME.search(payload[:120])
    return match.group(1).decode("ascii") if match else f"{len(payload)} bytes"


def summary(event: OutputEvent) -> str:
    match event:
        case AudioOutput():
            return f"audioOutput {len(event.pcm)} bytes"
        case TextOutput():
            return f"textOutput {event.role.value}: {event.content[:80]!r}"
        case ToolUse():
            return f"toolUse {event.tool_name} {dict(event.arguments)}"
        case ContentStart():
            return f"contentStart {event.type.value} {event.role.value} {event.generation_stage or ''}"
        case ContentEnd():
            return f"contentEnd {event.type.value} {event.stop_reason or ''}"
        case _:
            return type(event).__name__
