"""Audio sources and sinks, by name.

`SOURCES[name](spec)` / `SINKS[name](spec)` build an unopened source or sink; open it with
`async with`. Device modules load lazily, so the package imports without PyAudio installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.audio.base import (
    DEFAULT_BLOCK_MS,
    DEFAULT_CHUNK_MS,
    AudioFormat,
    AudioSink,
    AudioSource,
    SinkStatistics,
    SourceStatistics,
)
from runner.errors import AudioDeviceError

__all__ = [
    "SINKS",
    "SOURCES",
    "AudioFormat",
    "AudioSink",
    "AudioSource",
    "SinkSpec",
    "SinkStatistics",
    "SourceSpec",
    "SourceStatistics",
    "make_sink",
    "make_source",
]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What the engine asks of a source: the agent's input format and where the audio comes from."""

    fmt: AudioFormat
    chunk_ms: int = DEFAULT_CHUNK_MS
    # Device index or name substring (mic) or file path (wav); ignored by null.
    target: int | str | None = None


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """The agent's output format and where the audio goes (device or file path)."""

    fmt: AudioFormat
    target: int | str | None = None
    block_ms: int = DEFAULT_BLOCK_MS


def _mic(spec: SourceSpec) -> AudioSource:
    from runner.audio.pyaudio_device import MicSource
    return MicSource(spec.target, spec.fmt, spec.chunk_ms)


def _wav_source(spec: SourceSpec) -> AudioSource:
    from runner.audio.wav import WavSource
    if spec.target is None:
        raise AudioDeviceError("the wav source needs a file (--input FILE)")
    return WavSource(str(spec.target), spec.fmt, spec.chunk_ms)


def _null_source(spec: SourceSpec) -> AudioSource:
    from runner.audio.null import NullSource
    return NullSource(spec.fmt, spec.chunk_ms)


def _speaker(spec: SinkSpec) -> AudioSink:
    from runner.audio.pyaudio_device import SpeakerSink
    return SpeakerSink(spec.target, spec.fmt, block_ms=spec.block_ms)


def _wav_sink(spec: SinkSpec) -> AudioSink:
    from runner.audio.wav import WavSink
    if spec.target is None:
        raise AudioDeviceError("the wav sink needs a file (--output FILE)")
    return WavSink(str(spec.target), spec.fmt, block_ms=spec.block_ms)


def _null_sink(spec: SinkSpec) -> AudioSink:
    from runner.audio.null import NullSink
    return NullSink(spec.fmt, block_ms=spec.block_ms)


SOURCES: dict[str, Callable[[SourceSpec], AudioSource]] = {
    "mic": _mic,
    "wav": _wav_source,
    "null": _null_source,
}

SINKS: dict[str, Callable[[SinkSpec], AudioSink]] = {
    "speaker": _speaker,
    "wav": _wav_sink,
    "null": _null_sink,
}


def make_source(kind: str, spec: SourceSpec) -> AudioSource:
    """An unopened source of registry `kind` (a clear error for an unknown name)."""
    try:
        factory = SOURCES[kind]
    except KeyError:
        choices = ", ".join(sorted(SOURCES))
        raise AudioDeviceError(f"unknown audio source {kind!r}; choose from {choices}") from None
    return factory(spec)


def make_sink(kind: str, spec: SinkSpec) -> AudioSink:
    """An unopened sink of registry `kind` (a clear error for an unknown name)."""
    try:
        factory = SINKS[kind]
    except KeyError:
        choices = ", ".join(sorted(SINKS))
        raise AudioDeviceError(f"unknown audio sink {kind!r}; choose from {choices}") from None
    return factory(spec)
