"""Fixtures for audio tests: a fake clock for paced components, and a private PulseAudio daemon.

The PyAudio tests run their device code in a subprocess (tests/audio/pa_driver.py) started after
the daemon: ALSA decides once per process whether its "default" device is PulseAudio, so a PyAudio
created earlier in this process (by any test) would never see the virtual devices.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from audio_helpers import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def virtual_audio(pulseaudio_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The shared private PulseAudio (tests/conftest.py), exported to this process as well.

    Yields the environment variables (XDG_RUNTIME_DIR, PULSE_SERVER) that subprocesses need.
    """
    with pytest.MonkeyPatch.context() as mp:
        for key, value in pulseaudio_env.items():
            mp.setenv(key, value)
        yield pulseaudio_env
