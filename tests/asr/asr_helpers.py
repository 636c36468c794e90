"""Shared by the speech recognition tests: espeak-ng speech and word-level comparison."""

from __future__ import annotations

import re
import shutil

import pytest

from runner.emulator import asr, speech

needs_whisper = pytest.mark.skipif(
    not asr.whisper_installed(),
    reason="needs the asr extra (pip install -e '.[asr]'; scripts/dev and CI install it)")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="needs espeak-ng (apt-get install espeak-ng; CI installs it)")

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def spoken(text: str, rate: int = 16000) -> bytes:
    """`text` said by espeak-ng, int16 mono PCM at `rate`."""
    pcm, espeak_rate = speech.espeak_wav(text)
    return speech.resample(pcm, espeak_rate, rate)


def words(text: str | None) -> list[str]:
    """Lower-case words without punctuation, every digit spelled out ("12,345" and "1, 2, 3, 4, 5"
    both give one two three four five): Whisper writes numbers either way."""
    spelled = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", (text or "").casefold())
    return re.findall(r"[a-z']+", spelled)


def missing_words(heard: str | None, expected: str) -> list[str]:
    """The words of `expected` not in what was heard (order and extra words do not matter)."""
    got = set(words(heard))
    return [word for word in words(expected) if word not in got]
