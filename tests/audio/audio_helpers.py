"""Helpers shared by the audio tests: tones, spectra, energy envelopes, WAV writing, a fake clock."""

from __future__ import annotations

import asyncio
import math
import wave
from pathlib import Path

import numpy as np

from runner.audio.pcm import rms_dbfs

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


class FakeClock:
    """A monotonic clock that only moves when a paced component sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def tone(freq: float, ms: int, rate: int, amplitude: float = 0.5) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * math.pi * freq * t) * amplitude * 32767).round().astype("<i2").tobytes()


def dominant_frequency(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


def envelope(pcm: bytes, rate: int, window_ms: int = 10) -> list[float]:
    """rms_dbfs of consecutive windows."""
    step = rate * window_ms // 1000 * 2
    return [rms_dbfs(pcm[i:i + step]) for i in range(0, len(pcm) - step + 1, step)]


def loud_span_ms(pcm: bytes, rate: int, threshold_dbfs: float = -35, window_ms: int = 5) -> float:
    """Milliseconds from the first to the last window above `threshold_dbfs` (0 if none)."""
    loud = [i for i, level in enumerate(envelope(pcm, rate, window_ms)) if level > threshold_dbfs]
    return (loud[-1] - loud[0] + 1) * window_ms if loud else 0.0


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def read_wav_raw(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.readframes(w.getnframes()), w.getframerate()
