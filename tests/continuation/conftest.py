"""Fixtures of the continuation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _scripted_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process emulator plays the scenario's `user:` texts (no speech recognition): these
    tests count turns by those texts across streams (tests/asr covers recognition)."""
    monkeypatch.setenv("AGENT_RUN_EMULATOR_ASR", "none")
