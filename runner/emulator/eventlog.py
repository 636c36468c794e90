"""The emulator's event log: one line per event, audio summarised per content block.

A voice session carries ~30 audioInput events a second and the answers as many audioOutput
events; logged one by one they drown every other event. `StreamLog` logs each validated input
event and each sent output event as one line (`summarize_event`), except audio chunks: the first
chunk of an audio content block is logged, the rest are counted, and the block's contentEnd (or
the end of the stream) logs one summary line with the chunk count, bytes and duration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _b64_size(text: str) -> int:
    return len(text) * 3 // 4 - text[-2:].count("=") if text else 0


def summarize_event(event: object) -> str:
    """One line: event name and its scalar fields; audio as a byte count, never base64."""
    body = event.get("event") if isinstance(event, Mapping) else None
    if not isinstance(body, Mapping) or len(body) != 1:
        return f"unrecognised {type(event).__name__}"
    name, fields = next(iter(body.items()))
    parts = [str(name)]
    for key, value in fields.items() if isinstance(fields, Mapping) else ():
        if key == "content" and name in ("audioInput", "audioOutput") and isinstance(value, str):
            parts.append(f"audio={_b64_size(value)}B")
        elif isinstance(value, str):
            parts.append(f"{key}={value[:60]!r}" + ("…" if len(value) > 60 else ""))
        elif isinstance(value, bool | int | float):
            parts.append(f"{key}={value}")
        elif isinstance(value, Mapping):
            parts.append(f"{key}={{{','.join(map(str, value))}}}")
    return " ".join(parts)


@dataclass(slots=True)
class _AudioBlock:
    rate: int
    chunks: int = 0
    size: int = 0


# Which field names the content block an event belongs to, per direction.
_BLOCK_KEY = {"in ": "contentName", "out": "contentId"}
_AUDIO_EVENT = {"in ": "audioInput", "out": "audioOutput"}
_AUDIO_CONFIG = {"in ": "audioInputConfiguration", "out": "audioOutputConfiguration"}


class StreamLog:
    """The INFO event log of one stream (`label` prefixes every line)."""

    def __init__(self, logger: logging.Logger, label: str) -> None:
        self._log = logger
        self._label = label
        self._audio: dict[tuple[str, str], _AudioBlock] = {}

    def input(self, event: Mapping[str, Any]) -> None:
        self._event("in ", event)

    def output(self, event: Mapping[str, Any]) -> None:
        self._event("out", event)

    def close(self) -> None:
        """Summarise the audio blocks still open (the stream ended without their contentEnd)."""
        for key in list(self._audio):
            self._summarise(*key)

    def _event(self, direction: str, event: Mapping[str, Any]) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        body = event.get("event")
        if not isinstance(body, Mapping) or len(body) != 1:
            return
        name, fields = next(iter(body.items()))
        fields = fields if isinstance(fields, Mapping) else {}
        key = (direction, str(fields.get(_BLOCK_KEY[direction], "")))
        if name == _AUDIO_EVENT[direction]:
            block = self._audio.setdefault(key, _AudioBlock(rate=0))
            block.chunks += 1
            block.size += _b64_size(str(fields.get("content", "")))
            if block.chunks > 1:
                return
        elif name == "contentStart" and fields.get("type") == "AUDIO":
            config = fields.get(_AUDIO_CONFIG[direction])
            rate = config.get("sampleRateHertz") if isinstance(config, Mapping) else None
            self._audio[key] = _AudioBlock(rate=rate if isinstance(rate, int) else 0)
        self._log.info("%s %s %s", self._label, direction, summarize_event(event))
        if name == "contentEnd" and key in self._audio:
            self._summarise(*key)

    def _summarise(self, direction: str, block_id: str) -> None:
        block = self._audio.pop((direction, block_id))
        if not block.chunks:
            return
        duration = f", {block.size / 2 / block.rate:.1f} s at {block.rate} Hz" if block.rate else ""
        self._log.info("%s %s %s ×%d in block %r: %d B%s", self._label, direction,
                       _AUDIO_EVENT[direction], block.chunks, block_id, block.size, duration)
