"""What the person running an agent sees: a live, readable view of the conversation.

Normal mode prints one line per thing that happened (user and assistant final text, tool calls
with arguments, results and durations, interruptions, stream changes) and, on a terminal, a
status line saying who is speaking. `quiet` prints only problems; `verbose` adds the runner's
own events: every event sent and received except audio, which is summed up (one line per answer's
audio, one per few seconds of microphone audio sent), and a line per turn with its latency figures,
tokens and estimated cost. Unless quiet, a run ends with a summary of its turns (p50/p95).
`debug` adds a line per audio chunk (byte counts, never base64); the SDK's and the emulator's
internal logs go to stderr (run.py).

If stdout goes away (`agent-run ... | head -2`, a closed terminal), the console falls silent and
the run goes on: the conversation, its transcript and its WAV output matter more than its log.
Warnings then go to stderr; stdout is pointed at /dev/null so that nothing, not even the
interpreter's last flush at exit, reports a broken pipe.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

_STATUS_WIDTH = 60


class Console:
    def __init__(self, *, quiet: bool = False, verbose: bool = False, debug: bool = False,
                 stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.verbose = (verbose or debug) and not quiet
        self.debug = debug and not quiet
        out = stream if stream is not None else sys.stdout
        # sys.stdout is None when the process was started with stdout closed (`agent-run ... >&-`).
        self.gone = out is None  # stdout was closed by its reader
        self._out: TextIO = out if out is not None else open(os.devnull, "w")  # noqa: SIM115
        self._tty = not self.gone and self._out.isatty()
        self._status = ""  # the status line as shown
        self._state = ""  # what it says (who is speaking)
        self._prompt = ""  # text mode at a terminal: the status line ends in a prompt

    def _write(self, text: str) -> None:
        if self.gone:
            return
        try:
            try:
                self._out.write(text)
            except UnicodeEncodeError:  # lone surrogates (a tool's result) or a narrow encoding
                encoding = getattr(self._out, "encoding", None) or "utf-8"
                self._out.write(text.encode(encoding, "backslashreplace").decode(encoding))
            self._out.flush()
        except (OSError, ValueError):  # EPIPE, EIO, or a closed file object
            self._went_away()

    def _went_away(self) -> None:
        self.gone = True
        self._status = ""
        if self._out is not sys.stdout:
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def _emit(self, line: str) -> None:
        clear = "\r" + " " * _STATUS_WIDTH + "\r" if self._tty and self._status else ""
        self._write(clear + line + "\n" + (self._status if self._tty else ""))

    def status(self, text: str) -> None:
        """Who is speaking / what is going on; shown in place on a terminal only."""
        if self.quiet or not self._tty or text == self._state:
            return
        self._state = text
        shown = f"({text}) {self._prompt}" if self._prompt and text else text or self._prompt
        self._status = shown[:_STATUS_WIDTH]
        self._write("\r" + " " * _STATUS_WIDTH + "\r" + self._status)

    def prompt(self, text: str) -> None:
        """Text mode at a terminal: end the status line with `text`, where the user types."""
        self._prompt = text
        state, self._state = self._state, "\0"
        self.status(state)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._emit(text)

    def greeting(self, text: str) -> None:
        """The greeting instruction the assistant was given to speak first (Nova 2)."""
        self.info(f"greeting:  {text}")

    def user(self, text: str) -> None:
        self.info(f"you:       {text}")

    def assistant(self, text: str) -> None:
        self.info(f"assistant: {text}")

    def tool_call(self, name: str, arguments: Any) -> None:
        self.info(f"  -> tool {name}({json.dumps(arguments, ensure_ascii=False)})")

    def tool_result(self, name: str, result: str, duration_ms: float, ok: bool) -> None:
        word = "result" if ok else "ERROR"
        self.info(f"  <- tool {name} {word} in {duration_ms:.0f} ms: {_clip(result, 200)}")

    def interrupted(self) -> None:
        self.info("  [assistant interrupted]")

    def turn(self, line: str) -> None:
        """One turn's latency, tokens and cost (runner.telemetry.meter), with -v."""
        if self.verbose:
            self._emit(f"  [{line}]")

    def turn_summary(self, lines: list[str]) -> None:
        """The end-of-run summary of the turns (p50/p95 per figure, tokens and cost)."""
        for line in lines:
            self.info(line)

    def raw(self, direction: str, summary: str, *, chunk: bool = False) -> None:
        """One protocol event (`chunk`: one audio chunk, shown only with `debug`)."""
        if self.debug or (self.verbose and not chunk):
            self._emit(f"  {direction} {summary}")

    def warning(self, text: str) -> None:
        if self.gone:
            print(f"warning: {text}", file=sys.stderr)
            return
        self._emit(f"warning: {text}")

    def close(self) -> None:
        if self._tty and self._status:
            self._write("\r" + " " * _STATUS_WIDTH + "\r")
            self._status = self._state = ""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
