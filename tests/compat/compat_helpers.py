"""Helpers of the compatibility tests: `agent-run emulate` as a real subprocess, and clients run as
programs of their own (this venv's SDK, or a third-party client's own venv)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPAT = REPO / "tests" / "compat"
SAMPLES = REPO / "samples"
QUESTION_WAV = SAMPLES / "where_is_my_order.wav"
ORDERS_SCENARIO = SAMPLES / "orders.scenario.yaml"
SAMPLE_CLIENT = COMPAT / "sample_client.py"
# Keys a client might carry that the emulator never printed (AWS's documentation example pair).
OTHER_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
OTHER_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _emulator_requires_inference_configuration() -> bool:
    """Whether this checkout's emulator still refuses `{"sessionStart": {}}` (fixed on branch h4)."""
    schema = json.loads((REPO / "schemas" / "nova-sonic-input-event.schema.json").read_text())
    return "inferenceConfiguration" in schema["$defs"]["sessionStart"].get("required", [])


# strands sends an empty sessionStart on purpose; an emulator that refuses it fails strands at once.
STRANDS_NEEDS_EMPTY_SESSION_START = pytest.mark.xfail(
    _emulator_requires_inference_configuration(), strict=True,
    reason='strands sends {"sessionStart": {}}, which this emulator refuses '
           "(accepted once merged with h4's emulator fix)")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus anything AWS or emulator related, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in ("SSL_CERT_FILE", "AGENT_RUN_EMULATOR_DIR")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def exported(lines: Sequence[str]) -> dict[str, str]:
    """The variables `export` lines set, as a shell would (`eval`)."""
    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            for word in shlex.split(line.removeprefix("export ")):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Emulate:
    """`agent-run emulate ARGS` in the background, logging to a file."""

    def __init__(self, args: Sequence[str | Path], log: Path, env: Mapping[str, str]) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "emulate", *map(str, args)], cwd=REPO, env=dict(env),
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 30.0) -> list[str]:
        """The export lines, once the emulator listens."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "# agent-run emulator listening on" in text:
                return [line for line in text.splitlines() if line.startswith("export ")]
            assert self.proc.poll() is None, f"emulator exited {self.proc.returncode}:\n{text}"
            time.sleep(0.05)
        raise AssertionError(f"emulator not ready in {timeout_s} s:\n{self.log.read_text()}")

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        return self.proc.returncode

    def __enter__(self) -> Emulate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ClientResult:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-5000:]}"


def run_client(python: Path | str, script: Path, args: Sequence[str | Path], env: Mapping[str, str],
               timeout_s: float = 90.0) -> ClientResult:
    proc = subprocess.run([str(python), str(script), *map(str, args)], cwd=REPO, env=dict(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
    return ClientResult(proc.returncode, proc.stdout, proc.stderr)
