"""Real PortAudio against a private PulseAudio with null sinks (offline-audio.md §1.3).

`mic` is the virtual microphone (we play speech into it, the default input is its monitor) and
`spk` the virtual speaker (the default output; we record its monitor). The device code runs in
pa_driver.py subprocesses started after the daemon.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from audio_helpers import SAMPLES, envelope, loud_span_ms

from runner.audio.wav import read_wav

pytestmark = pytest.mark.audio

DRIVER = Path(__file__).with_name("pa_driver.py")
AGENT_RUN = Path(sys.executable).with_name("agent-run")


def driver(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(DRIVER), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def record_speaker(path: Path) -> Iterator[None]:
    """Record the virtual speaker's monitor (24 kHz mono s16le) into `path` while the block runs."""
    with path.open("wb") as out:
        parec = subprocess.Popen(
            ["parec", "-d", "spk.monitor", "--rate=24000", "--channels=1", "--format=s16le", "--raw",
             "--latency-msec=20"], stdout=out)
        try:
            time.sleep(0.3)  # parec connected and streaming
            yield
            time.sleep(0.3)
        finally:
            parec.terminate()
            parec.wait(timeout=10)


def test_mic_source_captures_speech_played_into_the_virtual_mic(virtual_audio: dict[str, str],
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "captured.raw"
    proc = subprocess.Popen([sys.executable, str(DRIVER), "capture", "3", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.6)  # some silence before the speech
    subprocess.run(["paplay", "-d", "mic", str(SAMPLES / "what_time_is_it.wav")], check=True, timeout=20)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-2000:]
    stats = json.loads(stdout.strip().splitlines()[-1])
    assert stats["device_rate"] == 16000
    assert stats["chunks_read"] == 150
    captured = out.read_bytes()
    assert len(captured) == 150 * 640
    levels = envelope(captured, 16000, window_ms=100)
    assert max(levels[:4]) < -60  # before the speech: near-silence
    speech = read_wav(SAMPLES / "what_time_is_it.wav", 16000)
    speech_level = np.percentile(envelope(speech, 16000, 100), 75)
    assert np.percentile(levels, 90) > speech_level - 6  # the speech arrived at its own level
    # All of the utterance arrived, in real time: same span from first to last loud window.
    expected_ms = loud_span_ms(speech, 16000, threshold_dbfs=-45)
    assert loud_span_ms(captured, 16000, threshold_dbfs=-45) == pytest.approx(expected_ms, abs=60)


def test_speaker_sink_plays_a_known_signal(virtual_audio: dict[str, str], tmp_path: Path) -> None:
    rec = tmp_path / "spk.raw"
    speech = read_wav(SAMPLES / "thanks_bye.wav", 24000)
    with record_speaker(rec):
        result = driver("play", str(SAMPLES / "thanks_bye.wav"))
    assert result["drained"] is True
    assert result["bytes_played"] == result["bytes_written"] == len(speech)
    assert 1.6 <= float(result["elapsed_s"]) <= 2.2  # real time: ~1.72 s of speech (+ device latency)
    recorded = np.frombuffer(rec.read_bytes(), dtype="<i2").astype(float)
    x = np.frombuffer(speech, dtype="<i2").astype(float)
    corr = np.correlate(recorded, x, mode="valid")
    lag = int(np.argmax(corr))
    segment = recorded[lag:lag + x.size]
    coefficient = float(np.corrcoef(segment, x)[0, 1])
    assert coefficient > 0.95, coefficient
    assert np.std(segment) / np.std(x) == pytest.approx(1.0, abs=0.05)


def test_speaker_flush_cuts_playback_quickly(virtual_audio: dict[str, str], tmp_path: Path) -> None:
    rec = tmp_path / "flush.raw"
    with record_speaker(rec):
        result = driver("flush")
    heard_ms = loud_span_ms(rec.read_bytes(), 24000, threshold_dbfs=-30, window_ms=5)
    flushed_after = float(result["flushed_after_ms"])
    # Start and stop both go through the same device latency, so what is heard beyond the time
    # between write and flush is what the flush failed to cut.
    assert heard_ms - flushed_after <= 50, (heard_ms, flushed_after)
    assert heard_ms >= flushed_after - 50
    assert float(result["pending_after_flush_ms"]) <= 80
    assert int(result["dropped"]) >= 1.3 * 48000


def test_devices_command_lists_the_pulse_devices(virtual_audio: dict[str, str]) -> None:
    done = subprocess.run([str(AGENT_RUN), "devices"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Input devices:"
    assert "Output devices:" in lines
    assert any("pulse" in line for line in lines)
    assert any(line.lstrip().startswith("*") and "default" in line for line in lines)
    as_json = subprocess.run([str(AGENT_RUN), "devices", "--json"],
                             capture_output=True, text=True, timeout=30)
    devices = json.loads(as_json.stdout)
    names = {d["name"] for d in devices}
    assert {"pulse", "default"} <= names
    default = next(d for d in devices if d["name"] == "default")
    assert default["is_default_input"] and default["is_default_output"]


def test_devices_command_without_a_sound_server(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run([str(AGENT_RUN), "devices"], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 1
    assert "no audio devices found; on a headless machine start PulseAudio with null sinks" in done.stderr
