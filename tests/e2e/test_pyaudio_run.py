"""The microphone-and-speakers path for real: PyAudio (PortAudio -> ALSA -> PulseAudio) on a private
daemon with null sinks. A question played into the virtual mic reaches the emulator, and the
spoken answer comes out of the virtual speaker, where `parec` records it."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import (
    ORDERS,
    ORDERS_SCENARIO,
    OUTPUT_RATE,
    SAMPLES,
    SPEECH_DBFS,
    Run,
    base_env,
    dbfs,
    speech_seconds,
)

pytestmark = pytest.mark.audio



@pytest.fixture(scope="module")
def pulse(pulseaudio_env: dict[str, str]) -> dict[str, str]:
    """The shared private PulseAudio (tests/conftest.py): default output `spk`, default input
    `mic.monitor`. Returns the full environment for subprocesses; this process's is untouched."""
    return {**base_env(), **pulseaudio_env}


def test_speech_into_the_virtual_mic_is_answered_on_the_virtual_speaker(
        pulse: dict[str, str], tmp_path: Path) -> None:
    transcript, recording = tmp_path / "t.jsonl", tmp_path / "spk.raw"
    with recording.open("wb") as raw:
        recorder = subprocess.Popen(
            ["parec", "-d", "spk.monitor", "--format=s16le", f"--rate={OUTPUT_RATE}", "--channels=1",
             "--latency-msec=20"], env=pulse, stdout=raw, stderr=subprocess.PIPE)
    run = Run([ORDERS, "--emulate", ORDERS_SCENARIO, "--max-duration", "15", "--time-limit", "30",
               "--transcript", transcript], transcript=transcript, env=pulse)
    try:
        run.wait_for_line("Ctrl-C to stop")
        asked = time.monotonic()
        subprocess.run(["paplay", "-d", "mic", str(SAMPLES / "where_is_my_order.wav")], env=pulse,
                       timeout=15, check=True)
        run.wait_for_line("assistant: Your order")
        time.sleep(3.0)  # the last sentence (~2 s) plays out of the speaker in real time
        answered = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        done = run.finish(timeout_s=10)
    finally:
        run.kill()
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=10)

    assert done.returncode == 130, done.describe()
    assert "Traceback" not in done.stderr
    # The speech played into the virtual mic reached the emulator: it heard a turn and the tool ran.
    # (Heard by the emulator's speech recognition with the asr extra, else the scenario's `user:`.)
    heard = [e["text"].casefold() for e in done.entries("user")]
    assert len(heard) == 1 and heard[0].startswith("where is my order"), done.describe()
    call, = done.entries("tool_call")
    assert call["name"] == "trackOrderTool" and call["input"] == {"orderId": "12345"}
    assert "error" not in done.entries("tool_result")[0]

    # The answer came out of the virtual speaker: seconds of speech-level audio were recorded.
    samples = np.frombuffer(recording.read_bytes(), dtype="<i2")
    assert len(samples) / OUTPUT_RATE > answered - asked - 1.0, "the recorder missed part of the run"
    spoken = speech_seconds(samples, OUTPUT_RATE)
    # "Let me check that order for you." + "Your order 12345 is ...": ~4 s in all
    assert spoken > 2.0, (spoken, dbfs(samples))
    # ...and only after the question: the recorder started before the run, which needed ~1 s to
    # start and then heard the 1.7 s question out.
    onset = first_loud_s(samples, OUTPUT_RATE)
    assert onset is not None and onset > 1.7, onset


def first_loud_s(samples: np.ndarray, rate: int, window_s: float = 0.05) -> float | None:
    n = int(rate * window_s)
    for i in range(len(samples) // n):
        if dbfs(samples[i * n:(i + 1) * n]) > SPEECH_DBFS:
            return i * window_s
    return None
