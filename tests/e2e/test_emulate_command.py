"""`agent-run emulate` as a product of its own: a client configured only through the three export
lines it prints (here: the runner WITHOUT --emulate, exactly as it would talk to real Bedrock)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import ORDERS, ORDERS_SCENARIO, REPO, SAMPLES, Finished, Run, base_env

EXPORTS = [
    re.compile(r"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://127\.0\.0\.1:(\d+)"),
    re.compile(r"export SSL_CERT_FILE=(\S+)"),
    re.compile(r"export AWS_ACCESS_KEY_ID=\S+ AWS_SECRET_ACCESS_KEY=\S+ AWS_REGION=us-east-1"),
]

# (export lines, the client's run, the emulator's exit code, the emulator's log)
Outcome = tuple[list[str], Finished, int, str]


class EmulatorProcess:
    """`agent-run emulate` in the background; its log goes to a file (it logs every event)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "emulate", "--port", "0", "--scenario", str(ORDERS_SCENARIO),
             "--time-limit", "30"], cwd=REPO, env=base_env(), stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "# agent-run emulator listening on" in text:
                return text.splitlines()
            assert self.proc.poll() is None, f"emulator exited {self.proc.returncode}:\n{text}"
            time.sleep(0.05)
        raise AssertionError(f"emulator not ready in {timeout_s} s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        return self.proc.returncode


def exported(lines: list[str]) -> dict[str, str]:
    """The variables the export lines set, as a shell would (`eval`)."""
    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            for word in shlex.split(line.removeprefix("export ")):
                key, _, value = word.partition("=")
                env[key] = value
    return env


@pytest.fixture(scope="module")
def emulator_and_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    tmp = tmp_path_factory.mktemp("emulate")
    emulator = EmulatorProcess(tmp / "emulator.log")
    client: Run | None = None
    try:
        lines = emulator.wait_ready()
        transcript = tmp / "t.jsonl"
        # Nothing but the exports tells the runner where "Bedrock" is.
        client = Run([ORDERS, "--input", SAMPLES / "where_is_my_order.wav", "--output", tmp / "answer.wav",
                      "--transcript", transcript, "--idle-exit", "1"],
                     transcript=transcript, env=base_env(**exported(lines)))
        done = client.finish()
        code = emulator.stop()
        yield lines, done, code, emulator.log.read_text()
    finally:
        if client is not None:
            client.kill()
        emulator.stop()


def test_emulate_prints_three_export_lines(emulator_and_client: Outcome) -> None:
    lines, _, _, _ = emulator_and_client
    exports = [line for line in lines if line.startswith("export ")]
    assert len(exports) == 3, lines
    for pattern, line in zip(EXPORTS, exports, strict=True):
        assert pattern.fullmatch(line), line
    ca = Path(exported(exports)["SSL_CERT_FILE"])
    assert ca.name.endswith(".pem")


def test_the_runner_talks_to_it_as_to_bedrock(emulator_and_client: Outcome) -> None:
    lines, done, _, _ = emulator_and_client
    assert done.returncode == 0, done.describe()
    endpoint = exported(lines)["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]
    start = done.entries("session")[0]
    assert start["event"] == "start" and start["endpoint"] == endpoint
    assert "emulator:" not in done.stdout  # no in-process emulator was started
    call, = done.entries("tool_call")
    result, = done.entries("tool_result")
    assert call["name"] == "trackOrderTool" and call["input"] == {"orderId": "12345"}
    assert result["result"]["orderNumber"] == "12345"
    assert any("12345" in e["text"] for e in done.entries("assistant"))


def test_the_emulator_logged_the_events(emulator_and_client: Outcome) -> None:
    _, _, code, log = emulator_and_client
    assert code == 0, log[-2000:]
    for needle in (" in  sessionStart", " in  audioInput", " out toolUse", " in  toolResult",
                   '"orderNumber": "12345"', " in  sessionEnd", "# emulator stopped"):
        assert needle in log, needle
