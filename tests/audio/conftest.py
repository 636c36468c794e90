"""Fixtures for audio tests: a fake clock for paced components, and a private PulseAudio daemon.

The PyAudio tests run their device code in a subprocess (tests/audio/pa_driver.py) started after
the daemon: ALSA decides once per process whether its "default" device is PulseAudio, so a PyAudio
created earlier in this process (by any test) would never see the virtual devices.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

AUDIO_ENV = Path(__file__).resolve().parents[1] / "audio_env.sh"
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


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def virtual_audio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start a private PulseAudio (null sinks `spk` and `mic`); export its address to this process.

    Yields the environment variables (XDG_RUNTIME_DIR, PULSE_SERVER) that subprocesses need.
    """
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay", "parec") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"pulseaudio not installed (CI installs it; see .ci/run): missing {', '.join(missing)}")
    runtime_dir = tmp_path_factory.mktemp("pulse")
    started = subprocess.run([str(AUDIO_ENV), "start", str(runtime_dir)],
                             capture_output=True, text=True, timeout=30, check=False)
    if started.returncode != 0:
        pytest.fail(f"could not start PulseAudio: {started.stderr}")
    env = {}
    for line in started.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            yield env
    finally:
        subprocess.run([str(AUDIO_ENV), "stop", str(runtime_dir)],
                       capture_output=True, timeout=30, check=False)
