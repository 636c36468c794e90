"""Twilio behind a proxy, and who ends the call: real `agent-run serve` processes, a simulated Twilio.

- X-Forwarded-Proto / X-Forwarded-Host set the TwiML stream URL and the URL the signature is checked
  against only when the request comes from a trusted proxy (`--forwarded-allow-ips`, default
  127.0.0.1); from anyone else the forged headers are ignored.
- A caller who hangs up while the server drains gets a normal close (1000), not 1001.
"""

from __future__ import annotations

import asyncio
import signal
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from twilio_caller import SAMPLES, ServeProcess, TwilioCaller, wav_as_ulaw

from runner.serve.frontends.twilio_signature import compute_signature

pytestmark = pytest.mark.timeout(90)

AUTH_TOKEN = "twilio-proxy-test-auth-token-42"
PUBLIC = "agent.example.com"
FORGED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": PUBLIC}
FORM = {"CallSid": "CA1", "From": "+15551234567"}


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """The default: the proxy on this machine (127.0.0.1) is trusted."""
    with ServeProcess(tmp_path_factory.mktemp("trusting"), SAMPLES / "orders.scenario.yaml",
                      env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN}) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Only a proxy in 10.0.0.0/8 is trusted: the test's requests from 127.0.0.1 are not."""
    with ServeProcess(tmp_path_factory.mktemp("untrusting"), SAMPLES / "orders.scenario.yaml",
                      "--forwarded-allow-ips", "10.0.0.0/8", env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN}) as server:
        server.wait_ready()
        yield server


def _stream_url(body: str) -> str | None:
    stream = ET.fromstring(body.split("?>", 1)[1]).find("Connect/Stream")
    return None if stream is None else stream.get("url")


def test_a_trusted_proxys_forwarded_url_is_used(trusting: ServeProcess) -> None:
    signed = compute_signature(AUTH_TOKEN, f"https://{PUBLIC}/twilio/voice", FORM.items())
    status, body = trusting.post("/twilio/voice", FORM, {**FORGED, "X-Twilio-Signature": signed})
    assert status == 200, body
    assert _stream_url(body) == f"wss://{PUBLIC}/twilio/stream"
    # The signature is checked against the public URL: one over the internal URL no longer fits.
    internal = compute_signature(AUTH_TOKEN, f"{trusting.base}/twilio/voice", FORM.items())
    assert trusting.post("/twilio/voice", FORM, {**FORGED, "X-Twilio-Signature": internal})[0] == 403


def test_forged_forwarded_headers_from_an_untrusted_address_are_ignored(untrusting: ServeProcess) -> None:
    forged = compute_signature(AUTH_TOKEN, f"https://{PUBLIC}/twilio/voice", FORM.items())
    assert untrusting.post("/twilio/voice", FORM, {**FORGED, "X-Twilio-Signature": forged})[0] == 403
    real = compute_signature(AUTH_TOKEN, f"{untrusting.base}/twilio/voice", FORM.items())
    status, body = untrusting.post("/twilio/voice", FORM, {**FORGED, "X-Twilio-Signature": real})
    assert status == 200, body
    assert _stream_url(body) == f"ws://127.0.0.1:{untrusting.port}/twilio/stream"


def test_a_bad_allow_list_is_one_clear_error(tmp_path: object) -> None:
    import subprocess
    import sys

    from tests.e2e.e2e_helpers import base_env
    from tests.serve.serve_helpers import AGENT, REPO

    done = subprocess.run([sys.executable, "-m", "runner", "serve", str(AGENT), "--forwarded-allow-ips",
                           "127.0.0.1,proxy.local"], cwd=REPO, env=base_env(), capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "--forwarded-allow-ips: 'proxy.local' is not an IP address or network" in done.stderr
    assert "Traceback" not in done.stderr


async def _hang_up_during_drain(server: ServeProcess) -> int | None:
    async with TwilioCaller(f"ws://127.0.0.1:{server.port}/twilio/stream",
                            call_sid="CA" + "5" * 32) as caller:
        speaking = asyncio.create_task(caller.speak(wav_as_ulaw(SAMPLES / "where_is_my_order.wav"),
                                                    then_silence_s=30))
        assert await caller.wait_for(lambda h: h.media_frames > 20, 20), caller.heard
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)  # draining now: the call goes on
        assert caller.heard.close_code is None
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        speaking.cancel()
        return caller.heard.close_code


def test_a_caller_hanging_up_during_a_drain_gets_a_normal_close(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    with ServeProcess(tmp_path_factory.mktemp("drain"), SAMPLES / "orders.scenario.yaml",
                      "--drain-timeout", "20") as server:
        server.wait_ready()
        assert asyncio.run(_hang_up_during_drain(server)) == 1000
        assert server.proc.wait(timeout=10) == 143  # the last call ended: the drain is over
        [entries] = server.transcripts_done(1)
        assert entries[-1]["reason"] == "caller hung up"
        heard = [e for e in entries if e["type"] == "heard"]
        assert heard and heard[-1]["how"] in ("played", "call ended")
