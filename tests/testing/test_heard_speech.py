"""With the `asr` extra, `heard:` checks what the emulator heard in spoken turns (`say:`, `audio:`).
Skipped, with the reason, where the emulator cannot hear words (no runner.emulator.asr, no
faster-whisper, or AGENT_RUN_EMULATOR_ASR=none)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from pathlib import Path

import pytest

from runner.testing.load import load_tests
from runner.testing.runner import RunSettings, run_outcome

REPO = Path(__file__).resolve().parents[2]


def hearing() -> str | None:
    """Why the emulator cannot hear words here, or None when it can."""
    if importlib.util.find_spec("runner.emulator.asr") is None:
        return "this runner has no speech recognition (runner.emulator.asr)"
    asr = importlib.import_module("runner.emulator.asr")
    if not asr.whisper_installed():
        return "the asr extra is not installed"
    if os.environ.get(asr.ENV_VAR, "whisper") != "whisper":
        return f"{asr.ENV_VAR}={os.environ[asr.ENV_VAR]}"
    return None


def test_heard_checks_the_words_of_spoken_turns(tmp_path: Path) -> None:
    if (why := hearing()) is not None:
        pytest.skip(f"the emulator cannot hear words: {why}")
    path = tmp_path / "t.test.yaml"
    path.write_text(f"""\
version: 1
agent: {REPO / 'agents' / 'orders.yaml'}
model:
  turns:
    - when: {{regex: "order"}}
      assistant: [{{say: "Which order?"}}]
cases:
  - name: spoken
    turns:
      - audio: {REPO / 'samples' / 'where_is_my_order.wav'}
        expect: [{{heard: {{regex: "where.*order"}}}}, {{says: which order}}]
      - say: What time is it?
        expect: [{{heard: time}}, {{heard: {{not_contains: order}}}}]
""")
    loaded = load_tests(path)
    outcome = asyncio.run(run_outcome(loaded.agent, loaded.tests.cases[0], RunSettings()))
    assert outcome.passed, outcome.report()
