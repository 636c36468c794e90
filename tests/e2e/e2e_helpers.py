"""End-to-end helpers: `agent-run` as a real subprocess, WAV inputs built from speech, WAV analysis.

Every test here runs the CLI exactly as a user would (`python -m runner ...`), so nothing depends
on the engine's internals. A run is slow by nature (audio is paced in real time), so a module starts
all its runs (`Run(...)`, in a module-scoped fixture) before waiting for any: they overlap.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
DATA = REPO / "tests" / "data" / "e2e"
ORDERS = REPO / "agents" / "orders.yaml"
ORDERS_SCENARIO = SAMPLES / "orders.scenario.yaml"
INPUT_RATE = 16000
OUTPUT_RATE = 24000
# Speech synthesised by espeak-ng and normalised to -3 dBFS sits around -20 dBFS rms; silence
# (and the resampler's dither) is far below -60.
SPEECH_DBFS = -35.0
RUN_TIMEOUT_S = 60.0


def base_env(**extra: str) -> dict[str, str]:
    """This environment minus anything AWS, so no run can reach a real account by accident.

    The emulator does not transcribe speech here (AGENT_RUN_EMULATOR_ASR=none): these tests script
    the user's side with the scenario's `user:` texts and time answers without recognition's
    latency. Pass AGENT_RUN_EMULATOR_ASR="whisper" to hear what was said (tests/asr does).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("SSL_CERT_FILE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["AGENT_RUN_EMULATOR_ASR"] = "none"
    env.update(extra)
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    transcript: list[dict[str, Any]] = field(default_factory=list)

    def entries(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.transcript if e["type"] == kind]

    def describe(self) -> str:
        lines = "\n".join(json.dumps(e) for e in self.transcript)
        return (f"exit {self.returncode} after {self.elapsed_s:.1f} s\n--- stdout\n{self.stdout}"
                f"\n--- stderr\n{self.stderr}\n--- transcript\n{lines}")


class Run:
    """One `agent-run` subprocess; `finish()` waits for it and reads its transcript."""

    def __init__(self, args: Sequence[str | Path], *, transcript: Path | None = None,
                 env: Mapping[str, str] | None = None,
                 stdin: int | IO[Any] | None = subprocess.DEVNULL) -> None:
        self.transcript_path = transcript
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", *map(str, args)], cwd=REPO,
            env=dict(env) if env is not None else base_env(),
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout_lines: list[str] = []
        self._result: Finished | None = None

    def wait_for_line(self, needle: str, timeout_s: float = 30.0) -> str:
        """Read stdout until a line containing `needle` (kept in `stdout_lines`)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.stdout_lines.append(line)
            if needle in line:
                return line
        self.kill()
        raise AssertionError(f"no line with {needle!r} within {timeout_s} s:\n{''.join(self.stdout_lines)}")

    def finish(self, timeout_s: float = RUN_TIMEOUT_S) -> Finished:
        if self._result is None:
            try:
                out, err = self.proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                out, err = self.proc.communicate()
                raise AssertionError(f"run did not end within {timeout_s} s:\n{out}\n{err}") from None
            elapsed = time.monotonic() - self.started
            self._result = Finished(self.proc.returncode, "".join(self.stdout_lines) + out, err, elapsed,
                                    read_jsonl(self.transcript_path) if self.transcript_path else [])
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line must be one JSON object: a transcript is valid JSONL at all times."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "type" in e and "ts" in e for e in entries), lines
    return entries


def types(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    return [e["type"] for e in entries]


# -- audio ---------------------------------------------------------------------------------------

def speech(text: str, rate: int = INPUT_RATE) -> np.ndarray:
    """`text` spoken by espeak-ng (as the samples are made), int16 at `rate`."""
    from runner.emulator.speech import espeak_wav, resample

    pcm, espeak_rate = espeak_wav(text)
    return np.frombuffer(resample(pcm, espeak_rate, rate), dtype="<i2")


def sample(name: str, rate: int = INPUT_RATE) -> np.ndarray:
    from runner.audio.wav import read_wav

    return np.frombuffer(read_wav(SAMPLES / name, rate), dtype="<i2")


def silence(seconds: float, rate: int = INPUT_RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype="<i2")


def write_wav(path: Path, parts: Sequence[np.ndarray], rate: int = INPUT_RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.concatenate(parts).astype("<i2").tobytes())
    return path


@dataclass(frozen=True)
class WavInfo:
    rate: int
    channels: int
    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_output(path: Path) -> WavInfo:
    """A WAV written by the runner, checked to be 16-bit PCM."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, "not 16-bit PCM"
        info = WavInfo(w.getframerate(), w.getnchannels(),
                       np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
    return info


def dbfs(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return 20 * math.log10(max(rms, 1e-6) / 32768)


def speech_seconds(samples: np.ndarray, rate: int, window_s: float = 0.05) -> float:
    """How long the signal is at speech level, counted in `window_s` windows."""
    n = int(rate * window_s)
    windows = len(samples) // n
    loud = sum(dbfs(samples[i * n:(i + 1) * n]) > SPEECH_DBFS for i in range(windows))
    return loud * window_s
