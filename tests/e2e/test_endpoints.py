"""Issue 13: malformed endpoints are refused, unreachable ones fail fast and are named.

`model.endpoint: "https://"` (no host) and a port out of range hung a run: the SDK fails inside its
request pipeline and never delivers the failure. Closed ports and unresolvable names were retried
six times (about 20 s) and the error did not say which endpoint. Runs here have fake credentials
and no emulator, so they reach only what the endpoint names (127.0.0.1, or a `.invalid` name that
never resolves, RFC 6761).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import SAMPLES, Finished, Run, base_env

AGENT = ('version: 1\nname: t\nmodel: {{id: amazon.nova-2-sonic-v1:0, region: us-east-1, endpoint: "{}"}}\n'
         "voice: tiffany\nsystem_prompt: Hi.\n")
NO_ENDPOINT = ("version: 1\nname: t\nmodel: {id: amazon.nova-2-sonic-v1:0, region: us-east-1}\n"
               "voice: tiffany\nsystem_prompt: Hi.\n")
# A run refused or failing at start ends well within this (Python and SDK start-up included).
LIMIT_S = 8.0
MALFORMED = [
    ("https://", "has no host name"),
    ("https://:443", "has no host name"),
    ("https://host:99999", "Port out of range"),
    ("https://host:0", "port 0 cannot be connected to"),
    ("https://host:http", "is not a valid URL"),
    ("https://user:secret@host", "must not contain a user name or password"),
    ("https://host/?a=1", "must not have a query"),
    ("https://ho st", "without spaces or control characters"),
]


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return base_env(HOME=str(home), AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="fake",
                    AWS_EC2_METADATA_DISABLED="true", **extra)


def one_error_line(done: Finished, needle: str) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.describe()
    lines = [line for line in done.stderr.splitlines() if line.startswith("agent-run: error:")]
    assert len(lines) == 1 and needle in lines[0], done.describe()


@pytest.mark.parametrize(("endpoint", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_endpoint_is_refused_by_check_and_by_a_run(
        tmp_path: Path, start_run: Callable[..., Run], endpoint: str, message: str) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT.format(endpoint))
    checked = start_run(["check", agent], env=env(tmp_path))
    run = start_run([agent, "--input", SAMPLES / "what_time_is_it.wav", "--output", tmp_path / "o.wav"],
                    env=env(tmp_path))
    checked_done = checked.finish(timeout_s=LIMIT_S)
    assert checked_done.returncode == 1, checked_done.describe()
    assert f"{agent}:3:" in checked_done.stdout + checked_done.stderr, checked_done.describe()
    assert message in checked_done.stdout + checked_done.stderr, checked_done.describe()
    # A run loads the agent file the same way: refused before anything connects, located.
    done = run.finish(timeout_s=LIMIT_S)
    assert done.returncode == 1, done.describe()
    one_error_line(done, str(agent))
    assert f"{agent}:3:" in done.stderr and message in done.stderr, done.describe()


def test_an_endpoint_from_the_environment_is_checked_and_named(
        tmp_path: Path, start_run: Callable[..., Run]) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(NO_ENDPOINT)
    done = start_run([agent, "--input", SAMPLES / "what_time_is_it.wav", "--output", tmp_path / "o.wav"],
                     env=env(tmp_path, AWS_ENDPOINT_URL_BEDROCK_RUNTIME="https://")).finish(timeout_s=LIMIT_S)
    assert done.returncode == 1, done.describe()
    one_error_line(done, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME 'https://' has no host name")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is


@pytest.mark.parametrize("endpoint", [f"https://127.0.0.1:{closed_port()}", "https://nonexistent.invalid"],
                         ids=["connection-refused", "unresolvable"])
def test_an_unreachable_endpoint_fails_fast_naming_it(
        tmp_path: Path, start_run: Callable[..., Run], endpoint: str) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT.format(endpoint))
    transcript = tmp_path / "t.jsonl"
    done = start_run([agent, "--input", SAMPLES / "what_time_is_it.wav", "--output", tmp_path / "o.wav",
                      "--transcript", transcript], env=env(tmp_path), transcript=transcript).finish(
        timeout_s=30)
    assert done.returncode == 1, done.describe()
    assert done.elapsed_s < LIMIT_S, done.describe()
    one_error_line(done, f"cannot reach {endpoint}: connection failed: ")
    assert "reconnecting" not in done.stdout + done.stderr, done.describe()
    # The transcript is closed: the one stream tried ends with its error.
    assert done.transcript[-1]["type"] == "session" and done.transcript[-1]["event"] == "end", done.describe()
