"""Issue 5: temporary credentials are rotated before they expire.

A real `credential_process` profile (the SDK's default chain runs it) hands out credentials that
expire about 3 minutes out, i.e. inside the runner's rotation margin: the runner must resolve
fresh credentials and move the conversation to a stream signed with them, without losing a turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
from pathlib import Path

import pytest

from runner.audio.wav import read_wav
from runner.config.loader import load_agent
from runner.console import Console
from runner.emulator.local import local_emulator
from runner.emulator.server import Emulator
from runner.engine import RunOptions, run_agent

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000

PROCESS = """\
import datetime, json, sys
counter = sys.argv[1]
with open(counter, "a") as f:
    f.write("x")
n = len(open(counter).read())
expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=183)
print(json.dumps({"Version": 1, "AccessKeyId": sys.argv[2], "SecretAccessKey": sys.argv[3],
                  "SessionToken": f"token-{n}", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}))
"""


pytestmark = pytest.mark.usefixtures("restore_environ")


def test_expiring_credentials_are_refreshed_on_a_new_stream(tmp_path: Path) -> None:
    gap = bytes(int(3.5 * RATE) * 2)
    pcm = b"".join(read_wav(ROOT / "samples" / name, RATE) + gap
                   for name in ("what_time_is_it.wav", "thanks_bye.wav", "what_time_is_it.wav"))
    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(json.dumps({"turns": [{"user": f"turn {i}", "assistant": [{"say": f"Answer {i}."}]}
                                              for i in (1, 2, 3)]}))
    transcript = tmp_path / "t.jsonl"
    counter = tmp_path / "invocations"

    async def main() -> int:
        async with local_emulator(scenario) as emulator:
            agent = _agent(tmp_path, emulator.endpoint)
            _use_process_credentials(tmp_path, emulator.server, counter)
            options = RunOptions(input_file=wav, output_file=tmp_path / "out.wav", transcript=transcript,
                                 idle_exit_s=1.5, max_duration_s=40)
            async with asyncio.timeout(60):
                return await run_agent(load_agent(agent), options, Console(quiet=True))

    assert asyncio.run(main()) == 0
    entries = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert [e["text"] for e in entries if e["type"] == "user"] == ["turn 1", "turn 2", "turn 3"]
    reasons = [e["reason"] for e in entries if e["type"] == "session" and e["event"] == "start"]
    assert reasons[0] == "start"
    assert any(r.startswith("rotation (credentials expire at") for r in reasons[1:]), reasons
    # Each rotation resolved credentials afresh: the process ran again for the new stream.
    assert len(counter.read_text()) >= len(reasons)
    assert not [e for e in entries if e["type"] == "session" and "error" in e]


def _agent(folder: Path, endpoint: str) -> Path:
    path = folder / "agent.yaml"
    path.write_text(f"""\
version: 1
name: credentials-test
description: rotates streams when its temporary credentials are about to expire
model: {{id: amazon.nova-2-sonic-v1:0, region: us-east-1, endpoint: "{endpoint}"}}
voice: matthew
policy: simple
system_prompt: Answer briefly.
session: {{rotate_after_s: 300}}
""")
    return path


def _use_process_credentials(folder: Path, server: Emulator, counter: Path) -> None:
    script = folder / "creds.py"
    script.write_text(PROCESS)
    key, secret = server.credentials.access_key_id, server.credentials.secret_access_key
    config = folder / "aws_config"
    command = f"{sys.executable} {script} {counter} {key} {secret}"
    config.write_text(f"[profile temp]\ncredential_process = {command}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update({"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"),
                       "AWS_PROFILE": "temp", "AWS_REGION": "us-east-1",
                       "SSL_CERT_FILE": str(server.ca_file)})
