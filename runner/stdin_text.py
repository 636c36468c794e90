"""Text mode's input from standard input: a person at a terminal, or lines piped in by a script.

On a terminal every line is sent as soon as Enter is pressed (over the assistant: a barge-in);
piped or redirected lines take turns (`interrupts` False), each after the answer to the one
before. End of input (Ctrl-D, the end of the pipe) finishes the input; a line longer than
MAX_LINE_BYTES is refused with a warning, not sent in part.

Reading never blocks the event loop: pipes and terminals are watched by the loop; a regular file
or a device the loop cannot watch (/dev/null) never blocks for long, so it is read directly. The
terminal's blocking mode is restored on the way out, for the shell that shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Callable
from types import TracebackType
from typing import BinaryIO, Self

MAX_LINE_BYTES = 64 * 1024


class StdinTextInput:
    def __init__(self, warn: Callable[[str], None], fd: int | None = None) -> None:
        self._warn = warn
        self._fd = fd if fd is not None else _stdin_fd()
        self.interrupts = self._fd is not None and os.isatty(self._fd)
        self._file: BinaryIO | None = None
        self._reader: asyncio.StreamReader | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._was_blocking = True
        self._eof = self._fd is None

    async def __aenter__(self) -> Self:
        if self._fd is None:
            return self
        try:  # a duplicate, so closing the transport leaves the process's stdin alone
            self._file = os.fdopen(os.dup(self._fd), "rb", buffering=0)
            mode = os.fstat(self._file.fileno()).st_mode
        except OSError:  # no usable stdin: nothing will be typed
            self._eof = True
            return self
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(self._file.fileno())):
            return self  # a regular file, /dev/null: the loop cannot watch it, and it never blocks long
        self._was_blocking = os.get_blocking(self._file.fileno())
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self._file)
        self._reader, self._transport = reader, transport
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        if self._reader is not None and self._fd is not None:  # the loop made it non-blocking; the
            # duplicate shares the open file (and its mode) with stdin, and with the shell.
            with contextlib.suppress(OSError):
                os.set_blocking(self._fd, self._was_blocking)
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        else:
            file.close()

    async def read_line(self) -> str | None:
        while not self._eof:
            try:
                data = await self._next()
            except ValueError:  # longer than the limit: its rest is skipped up to the newline
                self._warn(f"a typed line longer than {MAX_LINE_BYTES} bytes was not sent")
                continue
            except OSError as exc:  # the terminal went away (EIO): the input is over
                self._warn(f"cannot read the typed input any more: {exc.strerror or exc}")
                data = b""
            if not data:
                self._eof = True
                break
            return data.decode("utf-8", errors="replace").rstrip("\r\n")
        return None

    async def _next(self) -> bytes:
        if self._reader is not None:
            return await self._reader.readline()
        if self._file is None:
            return b""
        data = self._file.readline(MAX_LINE_BYTES + 1)
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
            while (rest := self._file.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            raise ValueError("line too long")
        return data


def _stdin_fd() -> int | None:
    """The file descriptor of standard input, or None when there is none (started with `<&-`)."""
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        return None
