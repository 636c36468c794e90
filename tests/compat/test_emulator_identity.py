"""`agent-run emulate`'s credentials and CA, as a client meets them.

* By default only the printed keys are accepted (AWS's 403 for others); `--any-credentials`
  accepts a client signing with its own keys, as other AWS emulators do, but still wants SigV4.
* The CA and the keys are kept per user, so a client configured from one run's exports keeps
  working after a restart; nothing per run is left behind, even by a crash.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

from compat_helpers import (
    ORDERS_SCENARIO,
    OTHER_KEY_ID,
    OTHER_SECRET,
    QUESTION_WAV,
    REPO,
    SAMPLE_CLIENT,
    clean_env,
    free_port,
    run_client,
)
from emulate_process import EmulateProcess, export_lines, exported


def _client(exports: dict[str, str], **override: str) -> tuple[list[str], dict[str, str]]:
    """The sample client's arguments and environment, configured from the exports."""
    args = ["--wav", str(QUESTION_WAV), "--endpoint", exports["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]]
    env = clean_env(**{k: v for k, v in exports.items() if k != "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"})
    env.update(override)
    return args, env


def _assert_tool_round_trip(stdout: str) -> None:
    received = json.loads(stdout)
    assert received["tool_uses"] == [{"name": "trackOrderTool", "input": {"orderId": "12345"}}]
    assert "Your order 12345 is shipped." in received["assistant_text"]
    assert received["audio_bytes_after_tool"] > 24000  # half a second of speech at 24 kHz


def test_other_keys_are_refused_by_default(tmp_path: Path) -> None:
    env = clean_env(AGENT_RUN_EMULATOR_DIR=str(tmp_path / "state"))
    emulate_args = ["--port", "0", "--scenario", ORDERS_SCENARIO]
    with EmulateProcess(emulate_args, tmp_path / "emulator.log", env) as emu:
        exports = exported(emu.wait_ready())
        args, client_env = _client(exports, AWS_ACCESS_KEY_ID=OTHER_KEY_ID,
                                   AWS_SECRET_ACCESS_KEY=OTHER_SECRET)
        result = run_client(sys.executable, SAMPLE_CLIENT, args, client_env)
        assert result.returncode == 1, result.describe()
        assert "403" in result.stderr and "UnrecognizedClientException" in result.stderr, result.describe()
        # AWS's own wording, in the emulator's log of the refusal.
        assert ("rejected: 403 UnrecognizedClientException: "
                "The security token included in the request is invalid.") in emu.text()


def test_any_credentials_accepts_a_client_signing_with_its_own_keys(tmp_path: Path) -> None:
    env = clean_env()
    state = tmp_path / "state"
    emulate_args = ["--port", "0", "--scenario", ORDERS_SCENARIO, "--any-credentials", "--state-dir", state]
    with EmulateProcess(emulate_args, tmp_path / "emulator.log", env) as emu:
        exports = exported(emu.wait_ready())
        assert exports["SSL_CERT_FILE"] == str(state / "ca.pem")
        args, client_env = _client(exports, AWS_ACCESS_KEY_ID=OTHER_KEY_ID,
                                   AWS_SECRET_ACCESS_KEY=OTHER_SECRET, AWS_SESSION_TOKEN="any-session-token")
        result = run_client(sys.executable, SAMPLE_CLIENT, args, client_env)
        assert result.returncode == 0, result.describe() + emu.text()[-3000:]
        _assert_tool_round_trip(result.stdout)
        # Still SigV4 for the emulator's region: a request signed for another region is refused.
        wrong_region = run_client(sys.executable, SAMPLE_CLIENT, [*args, "--region", "us-west-2"], client_env)
        assert wrong_region.returncode == 1, wrong_region.describe()
        assert "InvalidSignatureException" in wrong_region.stderr, wrong_region.describe()
        assert "Credential should be scoped to a valid region, not 'us-west-2'" in emu.text()


def test_exports_and_ca_survive_a_restart(tmp_path: Path) -> None:
    cache, tmp = tmp_path / "xdg-cache", tmp_path / "tmp"
    tmp.mkdir()
    # The default folder: $XDG_CACHE_HOME/agent-run/emulator. Per-run files would land in TMPDIR.
    env = clean_env(XDG_CACHE_HOME=str(cache), TMPDIR=str(tmp))
    port = free_port()
    args = ["--port", str(port), "--scenario", ORDERS_SCENARIO]
    with EmulateProcess(args, tmp_path / "first.log", env) as first:
        first_exports = export_lines(first.wait_ready())
    with EmulateProcess(args, tmp_path / "second.log", env) as second:
        second_exports = export_lines(second.wait_ready())
        assert second_exports == first_exports
        # A client set up from the FIRST run's exports talks to the second run.
        client_args, client_env = _client(exported(first_exports))
        result = run_client(sys.executable, SAMPLE_CLIENT, client_args, client_env)
        assert result.returncode == 0, result.describe() + second.text()[-3000:]
        _assert_tool_round_trip(result.stdout)

    state = cache / "agent-run" / "emulator"
    assert exported(first_exports)["SSL_CERT_FILE"] == str(state / "ca.pem")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "credentials.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in state.iterdir()) == [".lock", "ca.key", "ca.pem", "credentials.json"]
    assert list(tmp.iterdir()) == []


def test_a_killed_emulator_leaves_nothing_behind(tmp_path: Path) -> None:
    state, tmp = tmp_path / "state", tmp_path / "tmp"
    tmp.mkdir()
    env = clean_env(AGENT_RUN_EMULATOR_DIR=str(state), TMPDIR=str(tmp))
    emu = EmulateProcess(["--port", "0"], tmp_path / "emulator.log", env)
    try:
        emu.wait_ready()
        emu.proc.send_signal(signal.SIGKILL)
        emu.proc.wait(timeout=10)
    finally:
        emu.stop()
    assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in state.iterdir()) == [".lock", "ca.key", "ca.pem", "credentials.json"]


def test_an_unusable_state_folder_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = subprocess.run([sys.executable, "-m", "runner", "emulate", "--state-dir", str(blocker / "x")],
                          cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"agent-run: error: {blocker / 'x'}: cannot use the emulator's folder: "
        "Not a directory (choose another with --state-dir or AGENT_RUN_EMULATOR_DIR)")
