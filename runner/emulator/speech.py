"""The emulated assistant's voice: 16-bit mono PCM for a text at a given sample rate.

Real speech comes from `espeak-ng --stdout` (WAV at 22050 Hz), resampled with soxr to the rate the
client asked for in promptStart. Without espeak-ng the emulator still has to send audio of a
plausible length, so it falls back to a clearly synthetic signal: an amplitude-modulated 220 Hz
tone lasting about 60 ms per character. Results are cached per (text, rate): scenarios repeat
their sentences across sessions, and espeak costs a process start per call.

`synthesize` blocks (it may run a subprocess); async callers run it in a thread.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from functools import lru_cache

import numpy as np
import soxr

ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_S = 10.0
FALLBACK_MS_PER_CHAR = 60


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


@lru_cache(maxsize=256)
def synthesize(text: str, sample_rate: int) -> bytes:
    """PCM (int16 little-endian, mono) speaking `text` at `sample_rate`."""
    pcm = _espeak(text, sample_rate) if espeak_available() else None
    return pcm if pcm is not None else synthetic_signal(text, sample_rate)


def espeak_wav(text: str, *, voice: str = "en-us", speed_wpm: int = 175) -> tuple[bytes, int]:
    """espeak-ng's raw output for `text`: (int16 PCM, its sample rate). Raises OSError on failure."""
    # "--" keeps a text starting with "-" from being read as an option.
    proc = subprocess.run(
        [ESPEAK, "-v", voice, "-s", str(speed_wpm), "--stdout", "--", text],
        capture_output=True, timeout=ESPEAK_TIMEOUT_S, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise OSError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return _wav_pcm(proc.stdout)


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample int16 mono PCM with soxr's (anti-aliased) high quality filter."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, from_rate, to_rate)
    return np.asarray(out, dtype="<i2").tobytes()


def synthetic_signal(text: str, sample_rate: int) -> bytes:
    """A modulated tone as long as `text` would take to say (about 60 ms per character)."""
    n = max(1, sample_rate * FALLBACK_MS_PER_CHAR * max(1, len(text)) // 1000)
    t = np.arange(n) / sample_rate
    # 4 Hz "syllable" envelope on a 220 Hz carrier: obviously not speech, but speech-like in level.
    envelope = 0.5 * (1.0 - np.cos(2.0 * np.pi * 4.0 * t))
    wave_ = 0.3 * envelope * np.sin(2.0 * np.pi * 220.0 * t)
    return (wave_ * 32767.0).astype("<i2").tobytes()


def _espeak(text: str, sample_rate: int) -> bytes | None:
    try:
        pcm, rate = espeak_wav(text)
    except (OSError, subprocess.TimeoutExpired, wave.Error):
        return None
    return resample(pcm, rate, sample_rate)


def _wav_pcm(data: bytes) -> tuple[bytes, int]:
    # espeak-ng writes its WAV header before it knows the length (sizes 0x7fffffff when streamed);
    # the wave module copes, reading frames until the data ends.
    with wave.open(io.BytesIO(data)) as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise wave.Error("espeak-ng did not produce 16-bit mono audio")
        return wav.readframes(wav.getnframes()), wav.getframerate()
