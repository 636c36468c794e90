"""Helpers of the compatibility tests: `agent-run emulate` as a real subprocess, and clients run as
programs of their own (this venv's SDK, or a third-party client's own venv)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPAT = REPO / "tests" / "compat"
SAMPLES = REPO / "samples"
QUESTION_WAV = SAMPLES / "where_is_my_order.wav"
ORDERS_SCENARIO = SAMPLES / "orders.scenario.yaml"
SAMPLE_CLIENT = COMPAT / "sample_client.py"
# Keys a client might carry that the emulator never printed (AWS's documentation example pair).
OTHER_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
OTHER_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus anything AWS or emulator related, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in ("SSL_CERT_FILE", "AGENT_RUN_EMULATOR_DIR")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])




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
