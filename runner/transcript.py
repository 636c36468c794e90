"""The conversation transcript: JSON Lines written as things happen.

Each line is one JSON object with a `type` among: greeting, user, assistant, tool_call,
tool_result, interrupted, usage, session, turn (one per turn: its latency figures in ms, tokens and
estimated cost; runner.telemetry.turns) and summary (the run's p50/p95 per figure and totals).
Lines are flushed as they are written so a crash loses nothing already said. Audio never goes into
the transcript; secrets never do either (only what the model heard and said, tool inputs/outputs,
and counters).

A write that fails (a full disk) never raises into the conversation: the file is cut back to its
last whole line (so it stays valid JSON Lines), nothing more is written to it, and `failure` says
why, for the engine to end the run with that error. Entries are still kept in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.files import open_for_writing

log = logging.getLogger(__name__)

TRANSCRIPT_TYPES = ("greeting", "user", "assistant", "tool_call", "tool_result", "interrupted", "usage",
                    "session", "turn", "summary",
                    "heard",  # heard: a phone caller's playout of an answer (runner.serve)
                    # call control (runner.conversation.control): a nudge, goodbye or closing line
                    # said, and why the call ended
                    "call_control", "call_ended")


class Transcript:
    """Appends transcript entries to a file (or keeps them in memory when no path is given)."""

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        # Unbuffered: a line is on its way to the disk when write() returns, and a failed write
        # leaves no buffered rest that a later flush could append after the cut.
        self._fd: int | None = None
        self._good_size = 0  # bytes of whole lines in the file
        self.entries: list[dict[str, Any]] = []
        self.failure: str | None = None
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._before: list[Callable[[str, dict[str, Any]], None]] = []

    def listen(self, listener: Callable[[dict[str, Any]], None], *,
               before: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """Call `listener` with every entry after it is written, and `before` (kind, fields) before
        (the turn meter reads tool durations, and writes the last turn before the last session end)."""
        self._listeners.append(listener)
        if before is not None:
            self._before.append(before)

    def __enter__(self) -> Transcript:
        if self._path is not None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = open_for_writing(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                self._good_size = os.fstat(self._fd).st_size
            except OSError as exc:
                raise RunnerError(f"cannot write transcript {self._path}: {exc.strerror}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        if kind not in TRANSCRIPT_TYPES:
            raise ValueError(f"unknown transcript entry type {kind!r}")
        for before in self._before:
            _call(before, kind, fields)
        entry = {"type": kind, "ts": round(self._clock(), 3), **fields}
        self.entries.append(entry)
        if self._fd is not None:
            line = _jsonl(entry)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
                self._good_size += len(line)
            except OSError as exc:
                self._failed(exc)
        for listener in self._listeners:
            _call(listener, entry)
        return entry

    def _failed(self, exc: OSError) -> None:
        self.failure = f"cannot write transcript {self._path}: {exc.strerror or exc}"
        fd, self._fd = self._fd, None
        assert fd is not None
        # Only shrinks, so it works on a full disk: no half-written line stays behind.
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_size > self._good_size:
                os.ftruncate(fd, self._good_size)
        os.close(fd)


def _call(listener: Callable[..., None], *args: Any) -> None:
    try:
        listener(*args)
    except Exception:  # a listener measures the conversation: it must never break what it measures
        log.exception("transcript listener %r failed", listener)


def _jsonl(entry: dict[str, Any]) -> bytes:
    """One JSON line in UTF-8. Text holding lone surrogates (a tool result, arguments decoded from
    the model's `\\ud800` escapes) has no UTF-8 form: that line keeps them as JSON escapes."""
    text = json.dumps(entry, ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii")
