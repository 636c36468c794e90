"""`agent-run doctor`: real subprocesses with controlled environments, plus the pure checks.

Each subprocess gets an empty HOME and no AWS_* variables unless a test adds them, so what the
user's machine has never leaks in. Bedrock itself is never contacted: the tests either pass
--offline, point the endpoint at a closed port, or at an emulator serving real TLS.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner import doctor
from runner.audio.pyaudio_device import DeviceInfo
from runner.emulator.nova import NovaConfig, NovaHandler
from runner.errors import AudioDeviceError, TransportError
from runner.transports.base import ConnectionInfo
from tests.emulator.conftest import BackgroundEmulator

ROOT = Path(__file__).resolve().parent.parent
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789abcdef"
FAKE_KEYS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}


def agent_run_doctor(*args: str, home: Path, env: dict[str, str] | None = None
                     ) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "runner", "doctor", *args], cwd=ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=60,
                          check=False)


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    data = json.loads(result.stdout)
    assert data["ok"] == (result.returncode == 0)
    return {c["name"]: c for c in data["checks"]}


def line(result: subprocess.CompletedProcess[str], name: str) -> str:
    found = [ln for ln in result.stdout.splitlines() if ln.split()[1:2] == [name]]
    assert len(found) == 1, result.stdout
    return found[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


# --- as a user runs it ------------------------------------------------------------------------------

def test_no_credentials_fails_fast_with_the_fix(home: Path) -> None:
    start = time.monotonic()
    result = agent_run_doctor("--offline", home=home, env={"AWS_REGION": "us-east-1"})
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    cred = line(result, "credentials")
    assert cred.startswith("fail") and "no AWS credentials found" in cred
    assert "fix: configure AWS credentials: `aws configure`" in result.stdout
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in result.stdout
    # Resolution itself is reported and bounded; the whole process includes the SDK import.
    resolved = next(ln for ln in result.stdout.splitlines() if "resolved in" in ln)
    assert float(resolved.split("resolved in ")[1].split(" s")[0]) < 1.0
    assert elapsed < 10
    assert result.stdout.splitlines()[-1].endswith(": not ready")


def test_environment_credentials_are_ok_and_never_printed(home: Path) -> None:
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = {**FAKE_KEYS, "AWS_SESSION_TOKEN": TOKEN, "AWS_CREDENTIAL_EXPIRATION": expiry,
           "AWS_REGION": "us-west-2"}
    for args in (("--offline",), ("--offline", "--json")):
        result = agent_run_doctor(*args, home=home, env=env)
        output = result.stdout + result.stderr
        assert SECRET not in output and TOKEN not in output and KEY_ID not in output
        assert result.returncode == 0, output  # audio may warn; nothing fails
        if "--json" not in args:
            # --offline: the reachability check is skipped, with a note saying so.
            bedrock = line(result, "bedrock")
            assert bedrock.startswith("skipped")
            assert "offline (--offline): bedrock-runtime.us-west-2.amazonaws.com not contacted; " \
                   "model access not checked" in bedrock
    found = checks(result)
    cred = found["credentials"]
    assert cred["status"] == "ok"
    assert "environment" in cred["summary"] and "key ****MPLE" in cred["summary"]
    assert "temporary" in cred["summary"] and "in 59 min" in cred["summary"]
    assert found["region"] == {"name": "region", "status": "ok", "summary": "us-west-2 (from AWS_REGION)",
                               "fix": None, "details": []}


def test_profile_credentials_and_region_come_from_the_shared_files(home: Path) -> None:
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(
        f"[work]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n", encoding="utf-8")
    (home / ".aws" / "config").write_text("[profile work]\nregion = ap-northeast-1\n", encoding="utf-8")
    result = agent_run_doctor("--offline", "--json", home=home, env={"AWS_PROFILE": "work"})
    assert SECRET not in result.stdout + result.stderr and KEY_ID not in result.stdout
    found = checks(result)
    assert found["credentials"]["status"] == "ok"
    assert "profile 'work'" in found["credentials"]["summary"]
    assert str(home / ".aws" / "credentials") in found["credentials"]["summary"]
    assert "long-term keys" in found["credentials"]["summary"]
    assert found["region"]["summary"] == f"ap-northeast-1 (from profile 'work' in {home}/.aws/config)"


def test_a_missing_profile_is_a_failed_check_not_a_crash(home: Path) -> None:
    result = agent_run_doctor("--offline", "--profile", "nope", home=home, env={"AWS_REGION": "us-east-1"})
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert line(result, "credentials").startswith("fail")
    assert "fix: profile 'nope' is not in ~/.aws/config or ~/.aws/credentials" in result.stdout


def test_an_unreachable_endpoint_is_skipped_not_failed(home: Path) -> None:
    endpoint = f"https://127.0.0.1:{closed_port()}"
    result = agent_run_doctor("--json", home=home, env={**FAKE_KEYS, "AWS_REGION": "us-east-1",
                                                        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": endpoint})
    bedrock = checks(result)["bedrock"]
    assert bedrock["status"] == "skipped"
    assert bedrock["summary"] == "offline: could not reach 127.0.0.1; model access not checked"
    assert "refused" in bedrock["details"][0].lower()
    assert "--emulate" in bedrock["fix"]
    assert result.returncode == 0
    # No PulseAudio in this environment: unless the machine has a sound card, audio only warns.
    audio = checks(result)["audio"]
    assert audio["status"] == "ok" or "tests/audio_env.sh start" in audio["fix"]


def test_emulate_runs_a_real_stream_through_the_sdk(home: Path) -> None:
    # No credentials, no region: the emulator check brings its own and still passes.
    result = agent_run_doctor("--offline", "--emulate", "--json", home=home)
    emulator = checks(result)["emulator"]
    assert emulator["status"] == "ok", emulator
    assert emulator["summary"].startswith("amazon.nova-2-sonic-v1:0 answered via the built-in emulator")
    # The user's own setup is still reported, as what real Bedrock would need.
    credentials = checks(result)["credentials"]
    assert credentials["status"] == "warn"
    assert credentials["summary"].endswith("(needed for real Bedrock only)")
    assert result.returncode == 0


def test_emulate_without_credentials_is_ready_for_offline_work(home: Path) -> None:
    # As a new user runs it: no AWS_* variables, an empty HOME (no ~/.aws), no --offline.
    result = agent_run_doctor("--emulate", home=home)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert line(result, "emulator").startswith("ok")
    assert line(result, "credentials").startswith("warn") and "no AWS credentials found" in output
    assert line(result, "region").startswith("warn")
    assert not any(ln.startswith("fail") for ln in result.stdout.splitlines())
    *_, verdict, needs = result.stdout.splitlines()
    assert verdict.endswith(": ready for offline work (--emulate: the built-in emulator, no AWS account)")
    assert needs == ("real Bedrock still needs: an AWS region (model.region or AWS_REGION); AWS credentials; "
                     "model access (checked only with credentials and network) (see the warnings above)")
    data = json.loads(agent_run_doctor("--emulate", "--json", home=home).stdout)
    assert data["ok"] is True and data["offline_ready"] is True
    assert data["bedrock_needs"] == ["an AWS region (model.region or AWS_REGION)", "AWS credentials",
                                     "model access (checked only with credentials and network)"]


def test_emulate_with_keys_and_region_needs_only_model_access(home: Path) -> None:
    env = {**FAKE_KEYS, "AWS_REGION": "us-west-2"}
    result = agent_run_doctor("--offline", "--emulate", home=home, env=env)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1] == ("real Bedrock still needs: model access (checked only with "
                                              "credentials and network) (see the warnings above)")
    # A region that is set but not known to offer Nova Sonic: another region, not "a region".
    result = agent_run_doctor("--offline", "--emulate", home=home, env={**env, "AWS_REGION": "eu-west-3"})
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].startswith("real Bedrock still needs: a region where Nova Sonic is "
                                                     "offered; model access")


def test_without_emulate_missing_credentials_still_fail(home: Path) -> None:
    result = agent_run_doctor("--offline", home=home)
    assert result.returncode == 1
    assert line(result, "credentials").startswith("fail") and line(result, "region").startswith("fail")
    assert result.stdout.splitlines()[-1].endswith(": not ready")


def test_emulate_with_an_agent_checks_the_agent_and_its_model(home: Path) -> None:
    # orders.yaml: Nova 2 Sonic with tools; the probe greets it and it answers.
    result = agent_run_doctor("--offline", "--emulate", "agents/orders.yaml", home=home, env=FAKE_KEYS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert line(result, "emulator").startswith("ok")
    assert "amazon.nova-2-sonic-v1:0 answered via the built-in emulator" in line(result, "emulator")
    assert line(result, "agent").startswith("ok") and "voice matthew" in line(result, "agent")
    assert "us-east-1 (from model.region in agents/orders.yaml)" in line(result, "region")


def test_a_retired_v1_agent_warns_and_is_still_probed_with_speech(home: Path, tmp_path: Path) -> None:
    # v1 only answers speech, so the probe speaks to it; the agent line carries the lifecycle warning.
    agent = tmp_path / "old.yaml"
    agent.write_text("version: 1\nname: old\nmodel: {id: amazon.nova-sonic-v1:0, region: us-east-1}\n"
                     "voice: matthew\nsystem_prompt: Be brief.\n", encoding="utf-8")
    result = agent_run_doctor("--offline", "--emulate", "--json", str(agent), home=home, env=FAKE_KEYS)
    found = checks(result)
    assert found["emulator"]["status"] == "ok", found["emulator"]
    assert found["emulator"]["summary"].startswith(
        "amazon.nova-sonic-v1:0 answered via the built-in emulator")
    assert found["agent"]["status"] == "warn"
    assert any("reached end of life on 2026-09-14" in d and "use amazon.nova-2-sonic-v1:0" in d
               for d in found["agent"]["details"])
    assert result.returncode == 0


def test_an_invalid_agent_fails_with_its_problems(home: Path) -> None:
    bad = ROOT / "tests" / "data" / "agents" / "invalid" / "bad_voice.yaml"
    result = agent_run_doctor("--offline", "--json", str(bad), home=home, env=FAKE_KEYS)
    agent = checks(result)["agent"]
    assert agent["status"] == "fail" and "1 error" in agent["summary"]
    assert any("bad_voice.yaml:" in d and ": error: " in d for d in agent["details"])
    assert agent["fix"] == f"fix the errors listed (agent-run check {bad})"
    assert result.returncode == 1


@pytest.fixture(scope="module")
def bedrock_lookalike() -> Iterator[dict[str, str]]:
    """An emulator on a real TLS endpoint, standing in for Bedrock when it is reachable."""
    runner = BackgroundEmulator(NovaHandler(NovaConfig()))
    emulator = runner.start()
    try:
        yield emulator.env()
    finally:
        runner.stop()


def test_a_reachable_endpoint_gets_a_real_model_probe(home: Path, bedrock_lookalike: dict[str, str]) -> None:
    result = agent_run_doctor("--json", home=home, env=bedrock_lookalike)
    bedrock = checks(result)["bedrock"]
    assert bedrock["status"] == "ok", bedrock
    assert bedrock["summary"].startswith("amazon.nova-2-sonic-v1:0 answered via 127.0.0.1 (TLS in ")
    assert bedrock_lookalike["AWS_SECRET_ACCESS_KEY"] not in result.stdout


def test_an_untrusted_certificate_fails_with_the_fix(home: Path, bedrock_lookalike: dict[str, str]) -> None:
    env = {k: v for k, v in bedrock_lookalike.items() if k != "SSL_CERT_FILE"}
    result = agent_run_doctor("--json", home=home, env=env)
    bedrock = checks(result)["bedrock"]
    assert bedrock["status"] == "fail"
    assert "TLS certificate not trusted" in bedrock["summary"]
    assert bedrock["fix"].startswith("set SSL_CERT_FILE")
    assert result.returncode == 1


@pytest.mark.audio
def test_audio_devices_on_a_private_pulseaudio(home: Path, pulseaudio_env: dict[str, str]) -> None:
    result = agent_run_doctor("--offline", "--json", home=home,
                              env={**FAKE_KEYS, "AWS_REGION": "us-east-1", **pulseaudio_env})
    audio = checks(result)["audio"]
    assert audio["status"] == "ok", audio
    assert "default input 'pulse'" in audio["summary"] or "default input 'default'" in audio["summary"]
    assert result.returncode == 0


# --- the checks themselves ------------------------------------------------------------------------

def test_python_version_gate() -> None:
    assert doctor.check_python((3, 12, 1)).status == "ok"
    old = doctor.check_python((3, 11, 9))
    assert old.status == "fail" and "3.11.9" in old.summary and "python3.12 -m venv" in (old.fix or "")


def test_the_sdk_is_the_pinned_version_with_awscrt() -> None:
    result = doctor.check_sdk()
    assert result.status == "ok"
    assert result.summary.startswith("aws-sdk-bedrock-runtime 0.12.0, awscrt ")


def test_region_order_agent_then_env_then_profile(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\nregion = eu-north-1\n", encoding="utf-8")
    profile = doctor.read_aws_profile({}, tmp_path)
    env = {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-northeast-1"}
    assert doctor.find_region("us-east-1", env, profile, "a.yaml") == doctor.RegionFinding(
        "us-east-1", "model.region in a.yaml")
    assert doctor.find_region(None, env, profile).source == "AWS_REGION"
    assert doctor.find_region(None, {"AWS_DEFAULT_REGION": "x"}, profile).source == "AWS_DEFAULT_REGION"
    assert doctor.find_region(None, {}, profile).region == "eu-north-1"
    missing = doctor.check_region(doctor.find_region(None, {}, doctor.AwsProfile("default")))
    assert missing.status == "fail" and "AWS_REGION=us-east-1" in (missing.fix or "")
    assert doctor.check_region(doctor.RegionFinding("sa-east-1", "AWS_REGION")).status == "warn"


def test_profile_files_honour_the_env_paths_and_spot_other_sources(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.write_text("[profile sso]\nsso_session = corp\nregion = us-west-2\n", encoding="utf-8")
    profile = doctor.read_aws_profile({"AWS_CONFIG_FILE": str(config)}, tmp_path / "nowhere", "sso")
    assert profile.other_source == "SSO" and profile.region == "us-west-2" and profile.access_key_id is None
    fix = doctor.credentials_fix({}, profile)
    assert "aws configure export-credentials --profile sso" in fix
    assert "AWS_SECRET_ACCESS_KEY is not" in doctor.credentials_fix({"AWS_ACCESS_KEY_ID": KEY_ID}, profile)
    broken = tmp_path / "broken"
    broken.write_text("not an ini file\n", encoding="utf-8")
    assert doctor.read_aws_profile({"AWS_SHARED_CREDENTIALS_FILE": str(broken)}, tmp_path).problems


def test_expiry_turns_into_warn_and_fail() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    profile = doctor.AwsProfile("default")

    def described(expiry: datetime | None, env: dict[str, str]) -> doctor.CheckResult:
        info = ConnectionInfo("us-east-1", "https://x", "environment (AWS_ACCESS_KEY_ID)", expiry)
        return doctor.describe_credentials(info, env, profile, now)

    assert described(now + timedelta(hours=2), FAKE_KEYS).status == "ok"
    soon = described(now + timedelta(minutes=5), FAKE_KEYS)
    assert soon.status == "warn" and "in 5 min" in soon.summary and soon.fix
    expired = described(now - timedelta(seconds=1), FAKE_KEYS)
    assert expired.status == "fail" and "EXPIRED" in expired.summary
    env_expiry = described(None, {**FAKE_KEYS, "AWS_CREDENTIAL_EXPIRATION": "2025-01-01T12:10:00Z"})
    assert env_expiry.status == "warn" and "in 10 min" in env_expiry.summary
    assert described(None, FAKE_KEYS).summary.endswith("key ****MPLE, long-term keys")


def test_redact_scrubs_every_secret_everywhere() -> None:
    leaky = doctor.CheckResult("credentials", "fail", f"bad key {KEY_ID}", fix=f"not {SECRET}",
                               details=(f"token {TOKEN}",))
    clean = doctor.redact([leaky], doctor._secrets({**FAKE_KEYS, "AWS_SESSION_TOKEN": TOKEN},
                                                   doctor.AwsProfile("default")))[0]
    text = json.dumps(clean.to_json())
    assert KEY_ID not in text and SECRET not in text and TOKEN not in text
    assert "****MPLE" in clean.summary


def test_audio_without_pyaudio_names_the_install_commands() -> None:
    def no_pyaudio() -> list[DeviceInfo]:
        raise AudioDeviceError("microphone and speaker need PyAudio")

    result = doctor.check_audio(no_pyaudio)
    assert result.status == "warn"
    assert "pip install 'nova-agent-runner[audio]'" in (result.fix or "")
    assert "portaudio19-dev" in (result.fix or "")


def test_audio_names_the_defaults() -> None:
    def devices() -> list[DeviceInfo]:
        return [DeviceInfo(0, "mic", "ALSA", 1, 0, 16000.0, True, False),
                DeviceInfo(1, "spk", "ALSA", 0, 2, 48000.0, False, True)]

    result = doctor.check_audio(devices)
    assert result == doctor.CheckResult(
        "audio", "ok", "1 input, 1 output devices; default input 'mic', default output 'spk'")
    assert doctor.check_audio(lambda: devices()[:1]).status == "warn"


def test_espeak_found_or_missing() -> None:
    found = doctor.check_espeak()
    if shutil.which("espeak-ng"):
        assert found.status == "ok" and found.summary.startswith("espeak-ng ")
    missing = doctor.check_espeak(lambda _: None)
    assert missing.status == "warn" and "synthetic" in missing.summary
    assert missing.fix == "apt-get install espeak-ng"


def test_speech_recognition_found_or_missing() -> None:
    from runner.emulator import asr

    found = doctor.check_asr()
    if asr.whisper_installed():
        assert found.status == "ok" and "checksums match" in found.summary, found
    missing = doctor.check_asr(lambda: False)
    assert missing.status == "warn" and "asr extra" in missing.summary
    assert missing.fix == asr.INSTALL_HINT


def test_reach_reports_refused_connections_quickly() -> None:
    start = time.monotonic()
    reached = asyncio.run(doctor.reach(f"https://127.0.0.1:{closed_port()}", timeout_s=2.0))
    assert not reached.ok and not reached.tls_failure and reached.error
    assert time.monotonic() - start < 2.0


def test_report_has_one_line_per_check_and_a_fix_for_each_problem() -> None:
    results = [doctor.CheckResult("python", "ok", "Python 3.12.1"),
               doctor.CheckResult("credentials", "fail", "none", fix="configure them"),
               doctor.CheckResult("bedrock", "skipped", "offline", fix="go online")]
    text = doctor.format_report(results)
    assert text.splitlines() == [
        "ok      python       Python 3.12.1",
        "fail    credentials  none",
        "                     fix: configure them",
        "skipped bedrock      offline",
        "                     fix: go online",
        "1 ok, 0 warn, 1 fail, 1 skipped: not ready",
    ]
    assert doctor.exit_code(results) == 1 and doctor.exit_code(results[::2]) == 0


def test_probe_failures_name_the_right_fix() -> None:
    model = "amazon.nova-2-sonic-v1:0"

    def fix(kind: str, message: str = "refused") -> str:
        return doctor.probe_failure(TransportError(message, kind=kind), model, "us-east-1").fix or ""

    assert "Model access" in fix("AccessDeniedException")
    assert "bedrock:InvokeModelWithBidirectionalStream" in fix("CallError", "refused (HTTP 403)")
    assert "does not accept these credentials" in fix("UnrecognizedClientException")
    assert "agent-run check" in fix("ValidationException")
    assert "retry" in fix("ThrottlingException")
    failed = doctor.probe_failure(TransportError("ThrottlingException: slow down"), model, "us-east-1")
    assert failed.status == "fail" and "slow down" in failed.summary
