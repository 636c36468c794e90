"""`agent-run emulate` as a product of its own: a client configured only through the three export
lines it prints (here: the runner WITHOUT --emulate, exactly as it would talk to real Bedrock)."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import ORDERS, ORDERS_SCENARIO, REPO, SAMPLES, Finished, Run, base_env
from emulate_process import EmulateProcess, exported

from tests.emulator.fakes import audio_start, content_end, ev, opening, prompt_start, text_input, text_start
from tests.emulator.raw_client import RawClient

EXPORTS = [
    re.compile(r"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://127\.0\.0\.1:(\d+)"),
    re.compile(r"export SSL_CERT_FILE=(\S+)"),
    re.compile(r"export AWS_ACCESS_KEY_ID=\S+ AWS_SECRET_ACCESS_KEY=\S+ AWS_REGION=us-east-1"),
]

# (export lines, the client's run, the emulator's exit code, the emulator's log)
Outcome = tuple[list[str], Finished, int, str]


def start_emulator(log: Path, *args: str | Path) -> EmulateProcess:
    """`agent-run emulate` on a free port with a 30 s stream limit (default: the orders scenario)."""
    args = args or ("--scenario", ORDERS_SCENARIO)
    return EmulateProcess(["--port", "0", "--time-limit", "30", *args], log, base_env())


@pytest.fixture(scope="module")
def emulator_and_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    tmp = tmp_path_factory.mktemp("emulate")
    emulator = start_emulator(tmp / "emulator.log")
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


def test_the_emulator_logs_audio_as_one_summary_per_block(emulator_and_client: Outcome) -> None:
    _, _, _, log = emulator_and_client
    lines = log.splitlines()
    audio_in = [line for line in lines if " in  audioInput" in line]
    # ~30 audioInput events a second of speech: the first is logged, then one summary line.
    assert 1 <= len(audio_in) <= 2, audio_in
    summary = audio_in[-1]
    pattern = r"in  audioInput ×\d{2,} in block '[^']+': \d+ B, \d+\.\d s at 16000 Hz"
    assert re.search(pattern, summary), summary
    audio_out = [line for line in lines if "out audioOutput" in line]
    assert audio_out and all(re.search(r"out audioOutput (sessionId=|×\d+ in block)", a) for a in audio_out)
    assert len(audio_out) <= 2 * sum(" out contentStart" in line and "type='AUDIO'" in line for line in lines)


# -- errors a user meets when starting it (issue 8) --------------------------------------------------

def emulate(*args: str | Path, tmp: Path, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """`agent-run emulate ARGS` to completion, with TMPDIR in `tmp` (to see what it leaves)."""
    return subprocess.run([sys.executable, "-m", "runner", "emulate", *map(str, args)], cwd=REPO,
                          env=base_env(TMPDIR=str(tmp)), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout_s)


@pytest.fixture
def tmpdir_seen(tmp_path: Path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "-1"], "argument --port: must be a port number from 0 to 65535 (0: any free port), got '-1'"),
    (["--port", "65536"], "argument --port: must be a port number from 0 to 65535"),
    (["--port", "eighty"], "argument --port: must be a port number from 0 to 65535"),
    (["--time-limit", "nan"], "argument --time-limit: 'nan': expected a finite number of seconds"),
    (["--input-timeout", "-5"], "argument --input-timeout: '-5': expected more than 0 seconds"),
])
def test_a_bad_option_is_refused_in_one_line(args: list[str], message: str, tmpdir_seen: Path) -> None:
    done = emulate(*args, tmp=tmpdir_seen)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"agent-run emulate: error: {message}")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_an_address_that_cannot_be_bound_is_one_line_and_leaves_no_temp_folder(tmpdir_seen: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        in_use = emulate("--port", port, tmp=tmpdir_seen)
    not_local = emulate("--host", "192.0.2.1", tmp=tmpdir_seen)  # TEST-NET-1: never this machine's
    for done, line in [
        (in_use, f"agent-run: error: cannot listen on 127.0.0.1:{port}: address already in use; another "
                 f"program uses port {port}: choose another --port, or 0 for any free port"),
        (not_local, "agent-run: error: cannot listen on 192.0.2.1:0: cannot assign requested address; "
                    "192.0.2.1 is not an address of this machine"),
    ]:
        assert done.returncode == 1
        assert done.stderr.splitlines() == [line]
        assert done.stdout == ""  # no exports for an emulator that is not there
    assert list(tmpdir_seen.iterdir()) == []  # the CA's folder was removed on the way out


@pytest.mark.parametrize(("content", "where", "message"), [
    (b"turns:\n  - user: caf\xe9\n", "2:14", "the file is not UTF-8 text (byte 0xe9 cannot be decoded)"),
    (b"turns: [\n  - say: x\n", "2:3", "invalid YAML:"),
    (b"turns:\n  - assistant:\n      - sayy: hello\n", "3:9",
     "unknown key 'sayy' in turns[0].assistant[0]; did you mean 'say'?"),
    (b"turns:\n  - assistant:\n      - say: 'Hello {{ user '\n", "3:14",
     "turns[0].assistant[0].say: template syntax error:"),
])
def test_a_bad_scenario_is_reported_at_file_line_col(
        content: bytes, where: str, message: str, tmp_path: Path, tmpdir_seen: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_bytes(content)
    done = emulate("--scenario", scenario, tmp=tmpdir_seen)
    assert done.returncode == 1, done.stderr
    assert f"{scenario}:{where}: error: {message}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert list(tmpdir_seen.iterdir()) == []


@pytest.mark.parametrize("name", ["a directory", "/dev/zero"])
def test_a_scenario_that_is_not_a_regular_file(name: str, tmp_path: Path, tmpdir_seen: Path) -> None:
    path = tmp_path if name == "a directory" else Path(name)
    done = emulate("--scenario", path, tmp=tmpdir_seen, timeout_s=10)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"agent-run: error: {path}: 1 error(s) in the scenario file:\n{path}:1:1: error: ")
    assert "not a regular file" in done.stderr or "is a directory" in done.stderr


def test_all_scenario_problems_are_reported_the_same_way_by_run_emulate(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("turns:\n  - usr: hi\n    assistant:\n      - sayy: hello\nfaults: {throttle: 1}\n")
    args = [ORDERS, "--emulate", scenario, "--input", SAMPLES / "where_is_my_order.wav",
            "--output", tmp_path / "o.wav"]
    done = subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=REPO, env=base_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"agent-run: error: {scenario}: 3 error(s) in the scenario file:",
        f"{scenario}:2:5: error: unknown key 'usr' in turns[0]; did you mean 'user'?",
        f"{scenario}:4:9: error: unknown key 'sayy' in turns[0].assistant[0]; did you mean 'say'?",
        f"{scenario}:5:10: error: unknown key 'throttle' in faults; did you mean 'throttle_connects'?",
    ]


# -- the exports, for people and for scripts ----------------------------------------------------------

def test_help_says_what_is_printed_and_how_to_script_it() -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "emulate", "--help"], cwd=REPO, env=base_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "the first three lines printed are always the shell exports" in text
    assert "--env-file PATH" in text and "agent-run emulate -q --env-file emulator.env &" in text
    assert "Exit status: 0 after a stop, 1 when it cannot start" in text


def test_the_exports_come_first_and_the_env_file_is_sourceable(tmp_path: Path, tmpdir_seen: Path) -> None:
    env_file = tmp_path / "emulator.env"
    log = tmp_path / "emulator.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "emulate", "--env-file", str(env_file)],
                                cwd=REPO, env=base_env(TMPDIR=str(tmpdir_seen)), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while not env_file.exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert env_file.exists(), log.read_text()
            assert env_file.stat().st_mode & 0o777 == 0o600  # it holds the secret key
            # Sourced by a shell, it sets what a client needs.
            shell = subprocess.run(["bash", "-c", f". {shlex.quote(str(env_file))} && "
                                    "echo $AWS_ENDPOINT_URL_BEDROCK_RUNTIME $SSL_CERT_FILE $AWS_REGION"],
                                   capture_output=True, text=True, timeout=10)
            endpoint, ca, region = shell.stdout.split()
            assert re.fullmatch(r"https://127\.0\.0\.1:\d+", endpoint) and Path(ca).is_file()
            assert region == "us-east-1"
            time.sleep(0.2)
            lines = log.read_text().splitlines()
            # Without -q the log follows, but the first lines are the exports, as in the file.
            assert lines[:3] == env_file.read_text().splitlines()
            assert lines[3].startswith(f"# agent-run emulator listening on {endpoint}")
        finally:
            proc.send_signal(signal.SIGHUP)  # a closed terminal stops it as cleanly as Ctrl-C
            _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not env_file.exists()  # it would point at an emulator that is gone
    assert list(tmpdir_seen.iterdir()) == []
    assert log.read_text().splitlines()[-1] == "# emulator stopped"


# -- clients that misbehave (issue 8) --------------------------------------------------------------

SLOW_SCENARIO = """\
turns:
  - assistant:
      - say: "Once upon a time there was a story that went on and on, and it kept going for a long while."
settings: {speed: 1}
"""


@pytest.fixture
def slow_emulator_scenario(tmp_path: Path) -> Path:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SLOW_SCENARIO)
    return scenario


@pytest.fixture
def slow_emulator(tmp_path: Path, slow_emulator_scenario: Path
                  ) -> Iterator[tuple[EmulateProcess, dict[str, str]]]:
    emulator = start_emulator(tmp_path / "emulator.log", "--scenario", slow_emulator_scenario)
    try:
        yield emulator, exported(emulator.wait_ready())
    finally:
        emulator.stop()


def typed_turn(text: str) -> list[dict[str, object]]:
    return [*opening(), audio_start(), text_start("t", "USER", interactive=True), text_input("t", text),
            content_end("t")]


def test_a_client_that_goes_away_mid_answer_leaves_no_traceback_and_the_next_is_served(
        slow_emulator: tuple[EmulateProcess, dict[str, str]]) -> None:
    emulator, env = slow_emulator
    first = RawClient(env, "amazon.nova-2-sonic-v1:0")
    first.send(*typed_turn("Tell me a story."))
    first.read_until(lambda c: "audioOutput" in c.names())
    # GOAWAY while the answer streams, the socket still open: every later send hits a closed
    # HTTP/2 connection (h2: "Invalid input ConnectionInputs.SEND_DATA in state CLOSED").
    first.h2.close_connection()
    first.flush()
    time.sleep(1.5)
    first.sock.close()
    second = RawClient(env, "amazon.nova-2-sonic-v1:0")
    second.send(*typed_turn("Again, please."))
    second.read_until(lambda c: any(e["event"].get("contentEnd", {}).get("stopReason") == "END_TURN"
                                    for e in c.events))
    second.sock.close()
    assert second.status == "200" and "audioOutput" in second.names()
    code = emulator.stop()
    log = emulator.log.read_text()
    assert code == 0, log
    for bad in ("Traceback", "handler failed", "emulator task failed", "ProtocolError",
                "internalServerException"):
        assert bad not in log, log
    assert "client gone; stream closed" in log


def test_a_refused_event_is_named_in_the_error_and_not_logged_as_received(
        slow_emulator: tuple[EmulateProcess, dict[str, str]]) -> None:
    emulator, env = slow_emulator
    client = RawClient(env, "amazon.nova-2-sonic-v1:0")
    bad_prompt = prompt_start("Matthew")
    client.send(ev("sessionStart"), bad_prompt)  # an empty sessionStart is fine; "Matthew" is not
    client.read_until(lambda c: False)  # until the stream ends
    client.sock.close()
    emulator.stop()
    log = emulator.log.read_text()
    assert " in  sessionStart" in log
    assert " in  promptStart" not in log  # logged only once validated
    assert ("out exception validationException: Received invalid id: 'Matthew'. Please check AWS "
            "documentation for valid voiceIds. (input event #2: promptStart)") in log


def test_it_keeps_serving_quietly_once_stdout_is_closed(slow_emulator_scenario: Path) -> None:
    # `agent-run emulate | head -4`: head exits, every later log line hits a closed pipe.
    args = [sys.executable, "-m", "runner", "emulate", "--scenario", str(slow_emulator_scenario)]
    proc = subprocess.Popen(args, cwd=REPO, env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        proc.stdout.close()
        client = RawClient(exported(lines), "amazon.nova-2-sonic-v1:0")
        client.send(*typed_turn("Hello?"))
        client.read_until(lambda c: "audioOutput" in c.names())  # served, though nobody reads its log
        client.sock.close()
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert err == ""  # no "Logging error" tracebacks, no BrokenPipeError


def test_an_env_file_that_cannot_be_written_is_one_line(tmp_path: Path, tmpdir_seen: Path) -> None:
    target = tmp_path / "no-such-folder" / "emulator.env"
    done = emulate("--env-file", target, tmp=tmpdir_seen)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"agent-run: error: --env-file {target}: cannot write it: "
                                        "no such file or directory"]
    assert list(tmpdir_seen.iterdir()) == []
