"""Reading the files a user points the runner at, so that no path can hang or exhaust it.

Every file the runner reads on a user's say-so (agent files, prompt files, event templates,
scenarios, WAV input) goes through `read_user_file`: it refuses what is not a regular file
(`/dev/zero`, a FIFO that would block forever, a directory), a symlink loop, and anything larger
than a documented limit, before reading a byte more than the limit. The error is a RunnerError
naming the path, so the CLI prints one line and no traceback.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from runner.errors import RunnerError

# Documented size limits (README "Limits"). Generous for real files, small enough to refuse a
# mistaken path (a recording, a disk image) in well under a second.
MAX_AGENT_FILE_BYTES = 1 << 20  # agent YAML, scenario YAML
MAX_TEXT_FILE_BYTES = 1 << 20  # system_prompt_file, event templates
MAX_WAV_FILE_BYTES = 1 << 30  # --input WAV (about 9 hours at 16 kHz mono 16-bit)


class UnreadableFileError(RunnerError):
    """A user-named file cannot be read safely; `reason` is the short cause without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_KINDS = (
    (stat.S_ISDIR, "is a directory, not a file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def check_user_file(path: Path, *, limit: int, what: str = "this file") -> os.stat_result:
    """Stat `path` (following links) and refuse anything `read_user_file` would refuse."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UnreadableFileError(path, "no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFileError(path, "symbolic link loop (the link points back at itself)") from None
        raise UnreadableFileError(path, f"cannot read: {(exc.strerror or str(exc)).lower()}") from None
    for test, reason in _KINDS:
        if test(info.st_mode):
            raise UnreadableFileError(path, reason)
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFileError(path, "is not a regular file")
    if info.st_size > limit:
        raise UnreadableFileError(path, _too_large(info.st_size, limit, what))
    return info


def read_user_file(path: Path, *, limit: int, what: str = "this file") -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Raises UnreadableFileError for a missing file, a non-regular file, a symlink loop, a file
    over `limit` bytes (also one that grows past it while being read), or a read error.
    """
    check_user_file(path, limit=limit, what=what)
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after the check, open() must not block.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read: {(exc.strerror or str(exc)).lower()}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableFileError(path, "is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read: {(exc.strerror or str(exc)).lower()}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnreadableFileError(path, _too_large(None, limit, what))
    return data


def _too_large(size: int | None, limit: int, what: str) -> str:
    actual = f"{_human(size)}, more than" if size is not None else "more than"
    return f"is too large ({actual} the {_human(limit)} limit for {what})"


def _human(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def open_for_writing(path: Path, flags: int) -> int:
    """`os.open(path, flags)` for an output, without blocking: a FIFO nobody reads would block the
    open forever, so it fails at once (ENXIO, "No such device or address"); a FIFO with a reader,
    a device or a regular file opens as usual and is then written in blocking mode."""
    fd = os.open(path, flags | os.O_NONBLOCK, 0o644)
    os.set_blocking(fd, True)
    return fd
