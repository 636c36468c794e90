"""`agent-run emulate` as a real background subprocess, shared by the e2e and compat tests."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READY_LINE = "# agent-run emulator listening on"


class EmulateProcess:
    """`agent-run emulate ARGS` in the background; its output (it logs every event) goes to `log`."""

    def __init__(self, args: Sequence[str | Path], log: Path, env: Mapping[str, str]) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "emulate", *map(str, args)], cwd=REPO, env=dict(env),
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 30.0) -> list[str]:
        """Every line printed up to the listening line, once the emulator listens."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if READY_LINE in text:
                lines = text.splitlines()
                return lines[:next(i for i, line in enumerate(lines) if line.startswith(READY_LINE)) + 1]
            assert self.proc.poll() is None, f"emulator exited {self.proc.returncode}:\n{text}"
            time.sleep(0.05)
        raise AssertionError(f"emulator not ready in {timeout_s} s:\n{self.log.read_text()}")

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """Ctrl-C it (killed after 10 s); its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        return self.proc.returncode

    def __enter__(self) -> EmulateProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def export_lines(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if line.startswith("export ")]


def exported(lines: Sequence[str]) -> dict[str, str]:
    """The variables `export` lines set, as a shell would (`eval`)."""
    env: dict[str, str] = {}
    for line in export_lines(lines):
        for word in shlex.split(line.removeprefix("export ")):
            key, _, value = word.partition("=")
            env[key] = value
    return env
