"""Null devices: a source of paced silence and a sink that plays in real time into nothing."""

from __future__ import annotations

from runner.audio.pacing import PacedSource
from runner.audio.playback import PacedSink


class NullSource(PacedSource):
    """Silence, one chunk per `chunk_ms`, forever."""

    def _next_chunk(self) -> bytes:
        return bytes(self.chunk_bytes)


class NullSink(PacedSink):
    """Consumes audio at the real-time rate and discards it (so `pending_ms` stays meaningful)."""

    def _play(self, block: bytes) -> None:
        pass
