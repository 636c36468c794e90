"""The conversation transcript: JSON Lines written as things happen.

Each line is one JSON object with a `type` among: user, assistant, tool_call, tool_result,
interrupted, usage, session. Lines are flushed as they are written so a crash loses nothing
already said. Audio never goes into the transcript; secrets never do either (only what the
model heard and said, tool inputs/outputs, and counters).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from runner.errors import RunnerError

TRANSCRIPT_TYPES = ("user", "assistant", "tool_call", "tool_result", "interrupted", "usage", "session")


class Transcript:
    """Appends transcript entries to a file (or keeps them in memory when no path is given)."""

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._file: TextIO | None = None
        self.entries: list[dict[str, Any]] = []

    def __enter__(self) -> Transcript:
        if self._path is not None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self._path.open("a", encoding="utf-8")
            except OSError as exc:
                raise RunnerError(f"cannot write transcript {self._path}: {exc.strerror}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        if kind not in TRANSCRIPT_TYPES:
            raise ValueError(f"unknown transcript entry type {kind!r}")
        entry = {"type": kind, "ts": round(self._clock(), 3), **fields}
        self.entries.append(entry)
        if self._file is not None:
            self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._file.flush()
        return entry
