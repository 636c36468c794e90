"""The voices that speak `say:` turns: espeak-ng by default, Piper where installed (CI installs
the `voices` extra). A Piper-spoken turn is heard by the emulator's speech recognition, end to end
through `agent-run test --voice piper`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runner.errors import RunnerError
from runner.testing import voices
from tests.testing.test_agent_run_test import REPO, run
from tests.testing.test_heard_speech import hearing


def loudness(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples * samples)))


@pytest.mark.parametrize("name", sorted(voices.VOICES))
def test_each_voice_speaks_where_installed(name: str) -> None:
    voice = voices.VOICES[name]
    if (missing := voice.available()) is not None:
        pytest.skip(f"{name} is not installed here ({missing})")
    pcm, rate = voice.speak("Where is my order?")
    seconds = len(pcm) / 2 / rate
    assert rate in (16000, 22050, 24000) and 0.5 < seconds < 5, (rate, seconds)
    assert loudness(pcm) > 300  # speech, not silence


def test_the_voice_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(voices.ENV_VAR, raising=False)
    assert voices.chosen_voice().name == "espeak-ng"
    monkeypatch.setenv(voices.ENV_VAR, "piper")
    assert voices.chosen_voice().name == "piper"
    monkeypatch.setenv(voices.ENV_VAR, "festival")
    with pytest.raises(RunnerError, match="'festival' is not a voice; choose one of: espeak-ng, piper"):
        voices.chosen_voice()


def test_a_piper_voiced_turn_is_heard(tmp_path: Path) -> None:
    if (missing := voices.VOICES["piper"].available()) is not None:
        pytest.skip(f"piper is not installed here ({missing})")
    if (why := hearing()) is not None:
        pytest.skip(f"the emulator cannot hear words: {why}")
    path = tmp_path / "piper.test.yaml"
    path.write_text(f"""\
version: 1
agent: {REPO / 'agents' / 'orders.yaml'}
model:
  turns:
    - when: {{regex: "order"}}
      assistant: [{{say: "Which order?"}}]
cases:
  - name: spoken by piper
    turns:
      - say: Where is my order?
        expect: [{{heard: order}}, {{says: which order}}]
""")
    done = run("test", path, "--voice", "piper")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout


def test_an_unknown_voice_is_a_usage_error() -> None:
    done = run("test", "agents/", "--voice", "festival")
    assert done.returncode == 2 and "invalid choice: 'festival'" in done.stderr, done.stderr
