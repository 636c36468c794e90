"""Phone calls end to end: a real `agent-run serve` process with the emulator, and a simulated
Twilio (tests/twilio/twilio_caller.py) speaking Media Streams to it over a real WebSocket.

Two servers run for the module: one open on loopback (the orders scenario: a spoken question gets
the tool call and the answer's audio; keypad digits reach the transcript as text), one with a
Twilio auth token (unsigned requests are refused; a signed call is barged in on and gets `clear`).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from twilio_caller import REPO, SAMPLES, Heard, ServeProcess, TwilioCaller, rms, wav_as_ulaw
from websockets.exceptions import InvalidStatus

from runner.serve.frontends.twilio_signature import compute_signature

pytestmark = pytest.mark.timeout(120)

AUTH_TOKEN = "twilio-test-auth-token-0123456789"
LONG_ANSWER = REPO / "tests" / "data" / "e2e" / "long_answer.scenario.yaml"


SERVE_TOKEN = "serve-test-token-9876543210"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    with (ServeProcess(tmp_path_factory.mktemp("open"), SAMPLES / "orders.scenario.yaml") as open_server,
          ServeProcess(tmp_path_factory.mktemp("signed"), LONG_ANSWER, "--drain-timeout", "2",
                       env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN}) as signed):
        open_server.wait_ready()
        signed.wait_ready()
        yield open_server, signed


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """No Twilio auth token, but the server's own token (the webhook URL carries it)."""
    with ServeProcess(tmp_path_factory.mktemp("token"), SAMPLES / "orders.scenario.yaml",
                      "--max-conversations", "1", env={"AGENT_RUN_SERVE_TOKEN": SERVE_TOKEN}) as server:
        server.wait_ready()
        yield server


def stream_url(server: ServeProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/twilio/stream"


def test_voice_webhook_answers_connect_stream_with_parameters(
        servers: tuple[ServeProcess, ServeProcess]) -> None:
    server = servers[0]
    status, body = server.post("/twilio/voice?customer=Ada%20%22%3C%26%3E%22",
                               {"CallSid": "CA1", "From": "+15551234567", "To": "+15557654321"})
    assert status == 200, body
    root = ET.fromstring(body.split("?>", 1)[1])
    stream = root.find("Connect/Stream")
    assert stream is not None
    assert stream.get("url") == stream_url(server)
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {
        "customer": 'Ada "<&>"', "From": "+15551234567", "To": "+15557654321"}


@pytest.fixture(scope="module")
def narrowband_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """The orders agent at 8 kHz both ways: the telephone's own rate, G.711 only."""
    tmp = tmp_path_factory.mktemp("8k")
    agent = tmp / "orders_8k.yaml"
    agent.write_text((REPO / "agents" / "orders.yaml").read_text()
                     + "\naudio:\n  input_sample_rate: 8000\n  output_sample_rate: 8000\n")
    shutil.copy(REPO / "agents" / "orders_tools.py", tmp / "orders_tools.py")
    with ServeProcess(tmp, SAMPLES / "orders.scenario.yaml", agent=agent) as server:
        server.wait_ready()
        yield server


async def _orders_call(server: ServeProcess) -> Heard:
    question = wav_as_ulaw(SAMPLES / "where_is_my_order.wav")
    async with TwilioCaller(stream_url(server), parameters={"customer": "Ada"}) as caller:
        await caller.send_raw("this is not JSON")  # untrusted input: logged and skipped
        await caller.send_raw(b"\x00\x01binary")
        await caller.send_raw('{"event": "dtmf", "dtmf": {"digit": "99"}}')
        speaking = asyncio.create_task(caller.speak(question, then_silence_s=20))
        # The answer: "Let me check ...", the tool, "Your order 12345 is delivered." (~5 s of speech)
        await caller.wait_answer_arrived(25, played=True)
        await caller.press("4")
        await caller.press("2")
        await caller.press("#")
        await asyncio.sleep(3.0)
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        speaking.cancel()
        return caller.heard


def test_a_call_gets_the_tool_call_audio_and_keypad_text(servers: tuple[ServeProcess, ServeProcess]) -> None:
    server = servers[0]
    heard = asyncio.run(_orders_call(server))

    assert heard.bad == []
    assert heard.media_frames > 150  # more than 3 s of assistant speech, in 20 ms frames
    assert rms(heard.audio) > 500  # speech, not silence
    assert heard.marks and heard.marks == sorted(heard.marks, key=lambda n: int(n[1:]))
    assert heard.clears == 0
    assert heard.close_code == 1000

    [entries] = server.transcripts_done(1)
    tool_calls = [e for e in entries if e["type"] == "tool_call"]
    assert tool_calls[0]["name"] == "trackOrderTool" and tool_calls[0]["input"] == {"orderId": "12345"}
    said = [e["text"] for e in entries if e["type"] == "assistant"]
    assert "Your order 12345 is delivered." in said
    users = [e["text"] for e in entries if e["type"] == "user"]
    assert "(keypad: 4 2 #)" in users
    assert entries[-1]["reason"] == "caller hung up"
    log = server.stderr()
    assert "ignored a frame (frame is not JSON; 1 so far)" in log
    assert "binary frame" in log and "digit is not one of" in log
    ended = re.search(r"ended: ([\d.]+) s of assistant audio sent, ([\d.]+) s heard, ([\d.]+) s cut", log)
    assert ended, log
    sent, played, cut = map(float, ended.groups())
    assert sent == pytest.approx(heard.media_frames * 0.02, abs=0.1)
    assert cut == 0.0
    # What the marks confirmed is what the caller's side played (a mark follows each second of speech
    # and each answer's end; the hang-up came before the last answer had all played).
    really_played = heard.played_frames * 0.02
    assert really_played - 1.1 <= played <= really_played + 0.1
    # The same accounting, per answer, in the transcript (`heard` entries, milliseconds).
    answers = [e for e in entries if e["type"] == "heard"]
    assert answers and all(e["cut_ms"] == 0 for e in answers)
    assert sum(e["played_ms"] for e in answers) / 1000 == pytest.approx(played, abs=0.05 * len(answers))
    assert sum(e["sent_ms"] for e in answers) / 1000 == pytest.approx(sent, abs=0.05 * len(answers))
    assert answers[0]["how"] == "played" and answers[0]["played_ms"] == answers[0]["sent_ms"]


def test_an_8khz_agent_takes_a_call(narrowband_server: ServeProcess) -> None:
    heard = asyncio.run(_orders_call(narrowband_server))
    assert heard.bad == [] and heard.media_frames > 150 and rms(heard.audio) > 500
    [entries] = narrowband_server.transcripts_done(1)
    assert "Your order 12345 is delivered." in [e["text"] for e in entries if e["type"] == "assistant"]
    assert "(keypad: 4 2 #)" in [e["text"] for e in entries if e["type"] == "user"]


def test_unsigned_requests_are_refused_without_leaking_the_token(
        servers: tuple[ServeProcess, ServeProcess]) -> None:
    server = servers[1]
    form = {"CallSid": "CA1", "From": "+15551234567"}
    assert server.post("/twilio/voice", form)[0] == 403
    wrong = compute_signature("not-the-token", f"{server.base}/twilio/voice", form.items())
    assert server.post("/twilio/voice", form, {"X-Twilio-Signature": wrong})[0] == 403
    right = compute_signature(AUTH_TOKEN, f"{server.base}/twilio/voice", form.items())
    tampered = {**form, "From": "+15550000000"}
    assert server.post("/twilio/voice", tampered, {"X-Twilio-Signature": right})[0] == 403
    status, body = server.post("/twilio/voice", form, {"X-Twilio-Signature": right})
    assert status == 200 and "<Connect><Stream" in body

    async def unsigned_stream() -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with TwilioCaller(stream_url(server)):
                pass
        return refused.value.response.status_code

    assert asyncio.run(unsigned_stream()) == 403
    assert AUTH_TOKEN not in server.stderr() + server.stdout_path.read_text()


async def _barge_in_call(server: ServeProcess) -> Heard:
    first = wav_as_ulaw(SAMPLES / "thanks_bye.wav")
    second = wav_as_ulaw(SAMPLES / "what_time_is_it.wav")
    async with TwilioCaller(stream_url(server), auth_token=AUTH_TOKEN, call_sid="CA" + "7" * 32) as caller:
        await caller.speak(first)
        speaking = asyncio.create_task(caller.speak(b"", then_silence_s=30))
        # The long answer (~6 s) starts: talk over it a second into it.
        assert await caller.wait_for(lambda h: h.media_frames > 50, 20), caller.heard
        speaking.cancel()
        talking = asyncio.create_task(caller.speak(second, then_silence_s=20))
        assert await caller.wait_for(lambda h: h.clears > 0, 15), caller.heard
        await asyncio.sleep(3.0)
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        talking.cancel()
        return caller.heard


def test_barge_in_sends_clear_and_counts_what_was_cut(servers: tuple[ServeProcess, ServeProcess]) -> None:
    server = servers[1]
    heard = asyncio.run(_barge_in_call(server))

    assert heard.bad == []
    assert heard.clears >= 1
    [entries] = server.transcripts_done(1)
    assert any(e["type"] == "user" for e in entries)
    log = server.stderr()
    ended = re.search(r"call CA7+ ended: ([\d.]+) s of assistant audio sent, ([\d.]+) s heard, "
                      r"([\d.]+) s cut by (\d+) barge-ins", log)
    assert ended, log
    sent, played, cut, clears = map(float, ended.groups())
    assert clears >= 1 and cut > 0.0
    assert played < sent  # the caller did not hear all of the long answer
    assert server.metric("agent_run_phone_barge_ins_total") == clears
    assert server.metric('agent_run_phone_audio_seconds_total{what="cut"}') == pytest.approx(cut, abs=0.05)
    answers = [e for e in entries if e["type"] == "heard"]
    cut_answers = [e for e in answers if e["how"] == "cut"]
    assert cut_answers and cut_answers[0]["cut_ms"] > 0
    first_cut = cut_answers[0]
    assert first_cut["played_ms"] + first_cut["cut_ms"] == pytest.approx(first_cut["sent_ms"], abs=2)
    assert sum(e["cut_ms"] for e in answers) / 1000 == pytest.approx(cut, abs=0.05)


async def _call_with_token(server: ServeProcess, token: str) -> tuple[Heard, int]:
    """A call presenting `token`, and the webhook's status for another call meanwhile."""
    async with TwilioCaller(stream_url(server), parameters={"token": token}) as caller:
        speaking = asyncio.create_task(caller.speak(wav_as_ulaw(SAMPLES / "where_is_my_order.wav"),
                                                    then_silence_s=20))
        await caller.wait_for(lambda h: h.close_code is not None or h.media_frames > 20, 20)
        status, _ = await asyncio.to_thread(server.post, f"/twilio/voice?token={SERVE_TOKEN}",
                                            {"CallSid": "CA2"})
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        speaking.cancel()
        return caller.heard, status


def test_the_servers_token_guards_webhook_and_stream(token_server: ServeProcess) -> None:
    server = token_server
    form = {"CallSid": "CA1"}
    assert server.post("/twilio/voice", form)[0] == 403
    assert server.post("/twilio/voice?token=wrong", form)[0] == 403
    status, body = server.post(f"/twilio/voice?token={SERVE_TOKEN}&customer=Ada", form)
    assert status == 200
    stream = ET.fromstring(body.split("?>", 1)[1]).find("Connect/Stream")
    assert stream is not None
    # The stream URL may not carry a query on Twilio: the token rides as a custom parameter.
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {
        "customer": "Ada", "token": SERVE_TOKEN}

    refused, status = asyncio.run(_call_with_token(server, "wrong"))
    assert refused.close_code == 1008 and refused.media_frames == 0
    assert status == 200  # the refused call held no slot
    admitted, status = asyncio.run(_call_with_token(server, SERVE_TOKEN))
    assert admitted.media_frames > 20
    assert status == 503  # --max-conversations 1: a second call is refused at the webhook
    [entries] = server.transcripts_done(1)
    assert any(e["type"] == "user" for e in entries)  # the call was heard
    assert SERVE_TOKEN not in server.stderr()


async def _call_through_a_drain(server: ServeProcess) -> tuple[Heard, int]:
    form = {"CallSid": "CA3"}
    signature = compute_signature(AUTH_TOKEN, f"{server.base}/twilio/voice", form.items())
    async with TwilioCaller(stream_url(server), auth_token=AUTH_TOKEN, call_sid="CA" + "3" * 32) as caller:
        speaking = asyncio.create_task(caller.speak(wav_as_ulaw(SAMPLES / "thanks_bye.wav"),
                                                    then_silence_s=30))
        assert await caller.wait_for(lambda h: h.media_frames > 20, 20), caller.heard
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        status, _ = await asyncio.to_thread(server.post, "/twilio/voice", form,
                                            {"X-Twilio-Signature": signature})
        await caller.wait_for(lambda h: h.close_code is not None, 15)
        speaking.cancel()
        return caller.heard, status


def test_sigterm_drains_a_live_call(servers: tuple[ServeProcess, ServeProcess]) -> None:
    """Last in this module: it stops the signed server."""
    server = servers[1]
    before = len(list(server.transcripts.glob("*.jsonl")))
    heard, status = asyncio.run(_call_through_a_drain(server))
    assert status == 503  # draining: Twilio's next call goes elsewhere
    assert heard.close_code == 1001  # the drain timeout (2 s) ended the call
    assert server.proc.wait(timeout=20) == 143
    entries = server.transcripts_done(before + 1)[-1]
    assert entries[-1]["event"] == "end"
