"""The third-party clients' own virtual environments, each with the Bedrock SDK version it pins.

`.venv-compat/NAME` in the repository (gitignored), built once and reused while its requirement
list is unchanged (a stamp file names the list's hash). Building is bounded in time and locked, so
two test sessions never build the same one at once. Used by tests/compat/conftest.py; also a
script, to build them ahead of time or see what they hold:

    python tests/compat/venvs.py [pipecat|strands ...]
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / ".venv-compat"
INSTALL_TIMEOUT_S = 900.0

# Exact versions, so CI tests what was tested here. The SDK line is the version each client's own
# requirements resolve to (pipecat: <0.10; strands: <0.12), pinned so a new release cannot move it.
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "pipecat": ("pipecat-ai[aws-nova-sonic]==1.14.0", "aws-sdk-bedrock-runtime==0.9.0"),
    "strands": ("strands-agents[bidi]==1.62.0", "aws-sdk-bedrock-runtime[awscrt]==0.11.0"),
}


class VenvError(Exception):
    """A compat venv could not be built."""


@dataclass(frozen=True)
class Venv:
    name: str
    path: Path
    build_seconds: float | None  # None: reused as it was

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def _stamp(name: str) -> str:
    digest = hashlib.sha256("\n".join(REQUIREMENTS[name]).encode()).hexdigest()[:16]
    return f".built-{digest}"


@contextmanager
def _locked(name: str) -> Iterator[None]:
    ROOT.mkdir(exist_ok=True)
    with (ROOT / f".lock-{name}").open("w") as lock:
        deadline = time.monotonic() + INSTALL_TIMEOUT_S + 60
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise VenvError(f"{ROOT / name}: another build holds the lock for too long") from None
                time.sleep(0.5)
        yield


def ensure(name: str, *, log: Path | None = None) -> Venv:
    """The venv `name`, built now if missing or built from another requirement list."""
    path = ROOT / name
    with _locked(name):
        if (path / _stamp(name)).exists() and (path / "bin" / "python").exists():
            return Venv(name, path, None)
        started = time.monotonic()
        output = _build(path, REQUIREMENTS[name])
        if log is not None:
            log.write_text(output)
        (path / _stamp(name)).touch()
        return Venv(name, path, time.monotonic() - started)


def _build(path: Path, requirements: tuple[str, ...]) -> str:
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    commands = [
        [sys.executable, "-m", "venv", "--clear", str(path)],
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
    ]
    output = []
    for command in commands:
        remaining = deadline - time.monotonic()
        try:
            done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=max(remaining, 1))
        except subprocess.TimeoutExpired:
            raise VenvError(f"{path}: building took over {INSTALL_TIMEOUT_S:.0f} s") from None
        # pip's noise about this machine's missing local indexes is not worth keeping.
        output.append("\n".join(line for line in (done.stdout + done.stderr).splitlines()
                                if "is ignored: it is neither a file nor a directory" not in line))
        if done.returncode != 0:
            raise VenvError(f"{path}: `{' '.join(command[-3:])}` failed:\n{output[-1][-3000:]}")
    return "\n".join(output)


def main(names: list[str]) -> int:
    for name in names or list(REQUIREMENTS):
        try:
            venv = ensure(name)
        except VenvError as exc:
            print(exc, file=sys.stderr)
            return 1
        how = "reused" if venv.build_seconds is None else f"built in {venv.build_seconds:.0f} s"
        print(f"{venv.path}: {how} ({', '.join(REQUIREMENTS[name])})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
