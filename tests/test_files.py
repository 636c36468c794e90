"""runner.files: user-named files are read only when regular, bounded and reachable."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from runner.files import UnreadableFileError, read_user_file


def test_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes(b"name: x\n")
    assert read_user_file(path, limit=100) == b"name: x\n"


@pytest.mark.parametrize(("target", "reason"), [
    ("/dev/zero", "character device"),
    ("/dev/urandom", "character device"),
    ("/", "directory"),
])
def test_refuses_non_regular_files(target: str, reason: str) -> None:
    with pytest.raises(UnreadableFileError, match=reason):
        read_user_file(Path(target), limit=1 << 20)


def test_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = threading.Event()

    def attempt() -> None:
        with pytest.raises(UnreadableFileError, match="FIFO"):
            read_user_file(fifo, limit=100)
        done.set()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5)
    assert done.is_set(), "reading a FIFO with no writer blocked"


def test_refuses_a_symlink_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    with pytest.raises(UnreadableFileError, match="symbolic link loop"):
        read_user_file(loop, limit=100)


def test_refuses_a_file_over_the_limit_naming_both_sizes(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"x" * 3000)
    expected = r"2\.93 KiB, more than the 1000 bytes limit for agent files"
    with pytest.raises(UnreadableFileError, match=expected):
        read_user_file(path, limit=1000, what="agent files")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError) as info:
        read_user_file(tmp_path / "nope.yaml", limit=10)
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"
