"""The recipe for clients that build `https://bedrock-runtime.{region}.amazonaws.com` themselves and
ignore AWS_ENDPOINT_URL_BEDROCK_RUNTIME (AWS's samples, pipecat, strands): the emulator listens on
port 443 with a certificate for that name, and the name maps to 127.0.0.1.

Three unmodified clients: one written like AWS's sample on this repository's SDK, pipecat's and
strands' (their drivers with `--unmodified`, in their own venvs). The machine's /etc/hosts is never
touched: the emulator and the client run in a private network and mount namespace
(`unshare --mount --net`) whose /etc/hosts is a bind-mounted file, with only `lo` up, so all
traffic stays on that namespace's loopback.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import venvs
from compat_helpers import (
    COMPAT,
    ORDERS_SCENARIO,
    QUESTION_WAV,
    REPO,
    clean_env,
)

HOSTNAME = "bedrock-runtime.us-east-1.amazonaws.com"
SCENARIO = COMPAT / "data" / "order.scenario.yaml"


def _unshare_prefix(hosts: Path) -> list[str]:
    """The command prefix for a private net+mount namespace, or skip saying why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs util-linux `unshare` and iproute2 `ip` for a private network namespace")
    prefix = ["unshare", "--mount", "--net"]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]  # an unprivileged user namespace, where allowed
    probe = subprocess.run(
        [*prefix, "sh", "-c", f"ip link set lo up && mount --bind {shlex.quote(str(hosts))} /etc/hosts"],
        capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private network namespace here ({' '.join(prefix)}): "
                    f"{probe.stderr.strip()[:200]}")
    return prefix


SCRIPT = r"""
set -eu
ip link set lo up
mount --bind "$HOSTS_FILE" /etc/hosts
"$PYTHON" -m runner emulate --hostname "$NAME" --port 443 --scenario "$SCENARIO" >"$LOG" 2>&1 &
emulator=$!
for _ in $(seq 300); do grep -q '^# agent-run emulator listening' "$LOG" && break; sleep 0.1; done
# The exports give the CA and the keys; the endpoint variable is dropped: these clients ignore it.
eval "$(grep '^export ' "$LOG")"
unset AWS_ENDPOINT_URL_BEDROCK_RUNTIME
status=0
"$CLIENT_PYTHON" "$CLIENT" --wav "$WAV" $CLIENT_ARGS || status=$?
kill -INT "$emulator"; wait "$emulator" || true
exit "$status"
"""


@dataclass(frozen=True)
class Client:
    script: str
    scenario: Path
    venv: str | None  # a compat venv's name; None: this repository's SDK
    args: str = ""


CLIENTS = [
    # Written like AWS's console sample: SDK config with endpoint_uri=f"https://bedrock-runtime.{region}..."
    pytest.param(Client("sample_client.py", ORDERS_SCENARIO, None, "--region us-east-1"), id="aws-sample"),
    pytest.param(Client("pipecat_driver.py", SCENARIO, "pipecat", "--unmodified"), id="pipecat"),
    pytest.param(Client("strands_driver.py", SCENARIO, "strands", "--unmodified"), id="strands"),
]


@pytest.mark.timeout(venvs.INSTALL_TIMEOUT_S + 180)
@pytest.mark.parametrize("client", CLIENTS)
def test_an_unmodified_client_reaches_the_emulator_by_its_real_hostname(
        client: Client, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOSTNAME}\n")
    prefix = _unshare_prefix(hosts)
    python = sys.executable
    if client.venv is not None:
        python = str(request.getfixturevalue("compat_venvs")[client.venv].python)
    log = tmp_path / "emulator.log"
    env = clean_env(HOSTS_FILE=str(hosts), PYTHON=sys.executable, NAME=HOSTNAME,
                    SCENARIO=str(client.scenario), LOG=str(log), CLIENT_PYTHON=python,
                    CLIENT=str(COMPAT / client.script), CLIENT_ARGS=client.args, WAV=str(QUESTION_WAV),
                    AGENT_RUN_EMULATOR_DIR=str(tmp_path / "state"))
    proc = subprocess.run([*prefix, "bash", "-c", SCRIPT], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    emulator_log = log.read_text() if log.exists() else "(no log)"
    detail = f"exit {proc.returncode}\n{proc.stderr[-3000:]}\n--- emulator\n{emulator_log[-4000:]}"
    assert proc.returncode == 0, detail
    # The emulator printed the real endpoint (443 is implied) and served it.
    assert f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://{HOSTNAME}\n" in emulator_log
    assert f"listening on https://{HOSTNAME}" in emulator_log
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    calls = seen["tool_calls"] if "tool_calls" in seen else [u["input"] for u in seen["tool_uses"]]
    assert calls == [{"orderId": "12345"}], seen
    assert seen["audio_bytes_after_tool"] > 0 and seen["assistant_text"], seen
    assert " in  toolResult" in emulator_log
