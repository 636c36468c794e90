"""Nova Sonic clients written by others hold a conversation with a tool round trip against
`agent-run emulate`: pipecat's AWSNovaSonicLLMService and strands' BidiAgent, each in its own venv
with the SDK version it pins (conftest.py), each a small driver program in this folder.

Each client is pointed at the emulator only through the emulator's printed exports (endpoint, CA,
keys, region) plus the smallest change that makes it read the endpoint (see each driver). It
sends real speech (samples/where_is_my_order.wav) as its audio input, as both clients do in use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import venvs
from compat_helpers import (
    COMPAT,
    QUESTION_WAV,
    clean_env,
    run_client,
)
from emulate_process import EmulateProcess, exported

SCENARIO = COMPAT / "data" / "order.scenario.yaml"
# The first test may build both venvs (a minute or two with a warm pip cache; more on a cold one).
pytestmark = pytest.mark.timeout(venvs.INSTALL_TIMEOUT_S + 180)


def _converse(name: str, driver: str, venv: venvs.Venv, tmp_path: Path) -> tuple[dict[str, object], str]:
    """Run the client `name` against a fresh emulator; (what the client saw, the emulator's log)."""
    env = clean_env(AGENT_RUN_EMULATOR_DIR=str(tmp_path / "state"))
    with EmulateProcess(["--port", "0", "--scenario", SCENARIO], tmp_path / "emulator.log", env) as emu:
        exports = exported(emu.wait_ready())
        result = run_client(venv.python, COMPAT / driver, ["--wav", QUESTION_WAV], clean_env(**exports))
        log = emu.text()
    assert result.returncode == 0, f"{name}: {result.describe()}\n--- emulator\n{log[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1]), log


def _assert_tool_round_trip(seen: dict[str, object], log: str, *result_in_log: str) -> None:
    # The client's tool function was called with the scenario's arguments...
    assert seen["tool_calls"] == [{"orderId": "12345"}]
    # ...its result reached the emulator...
    results = [line for line in log.splitlines() if " in  toolResult" in line]
    assert len(results) == 1 and all(part in results[0] for part in result_in_log), log[-4000:]
    # ...and the client received the assistant's answer, as text and as audio, after the tool.
    assert any("Your order is on its way." in text for text in seen["assistant_text"])  # type: ignore[attr-defined]
    assert int(seen["audio_bytes_after_tool"]) > 16000  # type: ignore[call-overload]


def test_pipecat_nova_sonic_service(compat_venvs: dict[str, venvs.Venv], tmp_path: Path) -> None:
    seen, log = _converse("pipecat", "pipecat_driver.py", compat_venvs["pipecat"], tmp_path)
    # pipecat sends the tool's JSON as it is.
    _assert_tool_round_trip(seen, log, """content='{"orderNumber": "12345", "orderStatus": "Shipped"}'""")


def test_strands_bidi_agent(compat_venvs: dict[str, venvs.Venv], tmp_path: Path) -> None:
    seen, log = _converse("strands", "strands_driver.py", compat_venvs["strands"], tmp_path)
    # strands wraps the tool's return value in a text content block.
    _assert_tool_round_trip(seen, log, "content='{\"text\": ", "orderNumber", "12345")
    # What the emulator heard (speech recognition with the asr extra, else the scenario's `user:`).
    heard = seen["user_text"]
    assert isinstance(heard, list) and len(heard) == 1, heard
    assert str(heard[0]).casefold().startswith("where is my order"), heard
