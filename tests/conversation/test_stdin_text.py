"""Text mode's terminal side: lines from standard input (a pipe, a file, nothing) and the prompt."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import threading
from pathlib import Path

import pytest

from runner.console import Console
from runner.stdin_text import MAX_LINE_BYTES, StdinTextInput


@pytest.mark.parametrize("kind", ["pipe", "file", "devnull"])
def test_stdin_lines_come_from_a_pipe_a_file_or_nothing(kind: str, tmp_path: Path) -> None:
    data = "hello\r\nwörld\n" + "x" * (MAX_LINE_BYTES + 10) + "\nlast"
    warnings: list[str] = []

    async def main(fd: int) -> list[str | None]:
        async with StdinTextInput(warnings.append, fd=fd) as text:
            assert not text.interrupts  # not a terminal: a script, taking turns
            return [await text.read_line() for _ in range(4)]

    writer = None
    if kind == "pipe":
        read, write = os.pipe()

        def feed_pipe() -> None:  # more than a pipe's buffer: written while it is read
            with os.fdopen(write, "wb") as pipe:
                pipe.write(data.encode())

        writer = threading.Thread(target=feed_pipe)
        writer.start()
    else:
        path = tmp_path / "lines.txt"
        path.write_text(data, encoding="utf-8")
        read = os.open(path if kind == "file" else os.devnull, os.O_RDONLY)
    try:
        lines = asyncio.run(main(read))
        assert os.get_blocking(read), "the blocking mode is restored for whoever shares the file"
    finally:
        os.close(read)
        if writer is not None:
            writer.join(timeout=10)
    if kind == "devnull":
        assert lines == [None] * 4
    else:
        assert lines == ["hello", "wörld", "last", None]
        assert warnings == [f"a typed line longer than {MAX_LINE_BYTES} bytes was not sent"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_prompt_ends_the_status_line_at_a_terminal() -> None:
    out = Terminal()
    console = Console(stream=out)
    console.prompt("> ")
    console.status("listening")
    console.info("assistant: hi")
    assert out.getvalue().endswith("assistant: hi\n(listening) > ")


def test_a_terminal_that_goes_away_ends_the_input() -> None:
    master, slave = pty.openpty()
    warnings: list[str] = []

    async def main() -> list[str | None]:
        async with StdinTextInput(warnings.append, fd=master) as text:
            assert text.interrupts  # a terminal: a person typing
            os.write(slave, b"hello\n")
            first = await text.read_line()
            os.close(slave)  # the terminal closes: reading its other side fails with EIO
            return [first, await text.read_line()]

    try:
        assert asyncio.run(main()) == ["hello", None]
    finally:
        os.close(master)
    assert warnings == ["cannot read the typed input any more: Input/output error"]
