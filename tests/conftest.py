"""Fixtures shared by several test folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

AUDIO_ENV = Path(__file__).resolve().parent / "audio_env.sh"
PULSE_TOOLS = ("pulseaudio", "pactl", "paplay", "parec")


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """os.environ as it was before the test: an in-process emulator exports its endpoint, CA and
    test credentials there (use with `pytestmark = pytest.mark.usefixtures("restore_environ")`)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def pulseaudio_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One private PulseAudio daemon for the whole run (tests/audio_env.sh): null sinks `spk`
    (default output) and `mic` (its monitor is the default input).

    Yields the variables a process needs to reach it (XDG_RUNTIME_DIR, PULSE_SERVER); this
    process's own environment is left alone. Skipped, with the reason, where PulseAudio is missing.
    """
    missing = [tool for tool in PULSE_TOOLS if shutil.which(tool) is None]
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
        yield env
    finally:
        subprocess.run([str(AUDIO_ENV), "stop", str(runtime_dir)], capture_output=True, timeout=30,
                       check=False)
