"""Call control on phone calls, end to end: a real `agent-run serve` (emulator) reached by the simulated
Twilio of tests/twilio, and a real local HTTP server standing in for api.twilio.com.

Keypad digits reach the model as typed text, so the scenario picks the path by digit: 1 says goodbye
and calls end_call, 2 transfers to an allowed number, 3 tries one that is not allowed."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.twilio.twilio_caller import ServeProcess, TwilioCaller

pytestmark = pytest.mark.timeout(150)

AUTH_TOKEN = "twilio-auth-token-for-call-control-tests"
ACCOUNT = "AC" + "1" * 32
CALLER_ACCOUNT = "AC" + "0" * 32  # what the simulated Twilio puts in `start`
AGENT = """\
version: 1
name: desk
model: {id: amazon.nova-2-sonic-v1:0, region: us-east-1}
voice: matthew
system_prompt: You answer the phone for a hotel.
tools:
  - name: end_call
    description: End the call after saying goodbye.
    input_schema: {type: object, properties: {}}
    handler: builtin:end_call
  - name: transfer_call
    description: Transfer the caller to the front desk.
    input_schema: {type: object, properties: {to: {type: string}}, required: [to]}
    handler: builtin:transfer
    transfer:
      allow: ["+1 555 123 4567", "sip:desk@example.com"]
"""
SCENARIO = """\
turns:
  - when: {regex: "keypad: 1"}
    assistant:
      - say: "Thank you for calling the hotel."
      - tool: end_call
      - say: "Goodbye!"  # the answer to the tool result: its END_TURN ends the call once played
  - when: {regex: "keypad: 2"}
    assistant:
      - say: "Transferring you to the front desk."
      - tool: transfer_call
        input: {to: "+1 (555) 123-4567"}
  - when: {regex: "keypad: 3"}
    assistant:
      - tool: transfer_call
        input: {to: "+15559999999"}
      - say: "Sorry, I cannot do that."
"""


@dataclass
class ApiRequest:
    method: str
    path: str
    authorization: str
    form: dict[str, str]


@dataclass
class FakeTwilioApi:
    """A real HTTP server answering "update a live call" the way api.twilio.com does."""

    requests: list[ApiRequest] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                api.requests.append(ApiRequest("POST", self.path, self.headers.get("Authorization", ""),
                                               dict(urllib.parse.parse_qsl(body))))
                expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{AUTH_TOKEN}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    return
                sid = self.path.rsplit("/", 1)[-1].removesuffix(".json")
                self._answer(200, {"sid": sid, "status": "in-progress"})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads `requests`
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def api() -> Iterator[FakeTwilioApi]:
    fake = FakeTwilioApi()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, api: FakeTwilioApi) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("phone")
    (tmp / "desk.yaml").write_text(AGENT, encoding="utf-8")
    (tmp / "desk.scenario.yaml").write_text(SCENARIO, encoding="utf-8")
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_ACCOUNT_SID": ACCOUNT,
           "AGENT_RUN_TWILIO_API_URL": api.url}
    with ServeProcess(tmp, tmp / "desk.scenario.yaml", env=env, agent=tmp / "desk.yaml") as process:
        process.wait_ready()
        yield process


class LaggingCaller(TwilioCaller):
    """A phone that starts playing half a second behind (a jitter buffer, a slow network): the
    server's own clock says the goodbye has played before the caller heard it; only the marks tell."""

    LAG_S = 0.5

    def _on_message(self, msg: dict[str, Any]) -> None:
        if msg.get("event") == "media" and self.heard.first_media_at is None:
            self._play_until = time.monotonic() + self.LAG_S
        super()._on_message(msg)


@dataclass
class CallResult:
    close_code: int | None
    closed_at: float | None
    played_until: float  # when the last audio the caller got finished playing
    marks_pending_at_close: int  # marks the server sent that had not played (been echoed) at the close
    media_frames: int
    transcript: list[dict[str, Any]]


async def call(server: ServeProcess, digit: str, call_sid: str, *,
               hang_up_after_s: float = 25.0) -> CallResult:
    """One call: press `digit`, then wait for the server to hang up (or hang up after a while)."""
    before = set(server.transcript_files())
    url = f"ws://127.0.0.1:{server.port}/twilio/stream"
    async with LaggingCaller(url, call_sid=call_sid, auth_token=AUTH_TOKEN) as caller:
        await caller.press(digit)
        await caller.press("#")
        closed = await caller.wait_for(lambda heard: heard.close_code is not None, hang_up_after_s)
        closed_at = time.monotonic() if closed else None
        pending = len(caller._pending_marks)
        if not closed:
            await caller.hang_up()
            await caller.wait_for(lambda heard: heard.close_code is not None, 10)
        played_until = caller._play_until
    deadline = time.monotonic() + 20
    while True:
        new = [f for f in server.transcript_files() if f not in before]
        lines = new[0].read_text().splitlines() if new else []
        entries = [json.loads(line) for line in lines if line.strip()]
        if entries and entries[-1].get("event") == "end":
            break
        assert time.monotonic() < deadline, f"no finished transcript for {call_sid}:\n{server.stderr()}"
        await asyncio.sleep(0.1)
    return CallResult(caller.heard.close_code, closed_at, played_until, pending, caller.heard.media_frames,
                      entries)


def kinds(entries: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["type"] == kind]


def test_end_call_hangs_up_normally_once_the_goodbye_was_heard(server: ServeProcess,
                                                                 api: FakeTwilioApi) -> None:
    result = asyncio.run(call(server, "1", "CA" + "e" * 32))
    entries = result.transcript
    assert result.close_code == 1000, (result, server.stderr())
    assert result.closed_at is not None and result.media_frames > 50  # the goodbye's audio came
    # Closed after the caller heard all of it: every mark echoed, the audio played out.
    assert result.marks_pending_at_close == 0, result
    assert result.closed_at >= result.played_until - 0.05, result
    assert [e["reason"] for e in kinds(entries, "call_ended")] == ["end_call"], entries
    assert not api.requests


def test_transfer_redirects_the_live_call_through_the_rest_api(server: ServeProcess,
                                                               api: FakeTwilioApi) -> None:
    call_sid = "CA" + "7" * 32
    api.requests.clear()
    result = asyncio.run(call(server, "2", call_sid))
    entries = result.transcript
    assert len(api.requests) == 1, (api.requests, entries)
    request = api.requests[0]
    # The call's own account in the path, the configured account and token as Basic auth.
    assert request.path == f"/2010-04-01/Accounts/{CALLER_ACCOUNT}/Calls/{call_sid}.json"
    credentials = base64.b64decode(request.authorization.removeprefix("Basic ")).decode()
    assert credentials == f"{ACCOUNT}:{AUTH_TOKEN}"
    assert request.form == {"Twiml": "<Response><Dial><Number>+15551234567</Number></Dial></Response>"}
    results = kinds(entries, "tool_result")
    assert [r.get("result") for r in results] == [{"transferred": True, "to": "+15551234567"}], entries
    assert [e["reason"] for e in kinds(entries, "call_ended")] == ["transfer"], entries
    assert result.close_code == 1000
    # The words before the transfer were played before the line changed hands.
    assert result.media_frames > 50
    text = json.dumps(entries) + server.stderr()
    assert AUTH_TOKEN not in text
    assert base64.b64encode(f"{ACCOUNT}:{AUTH_TOKEN}".encode()).decode() not in text


def test_a_destination_outside_the_allow_list_is_refused_without_a_request(server: ServeProcess,
                                                                           api: FakeTwilioApi) -> None:
    api.requests.clear()
    result = asyncio.run(call(server, "3", "CA" + "3" * 32, hang_up_after_s=6))
    entries = result.transcript
    assert not api.requests
    errors = [r.get("error", "") for r in kinds(entries, "tool_result")]
    assert len(errors) == 1 and "not allowed" in errors[0], entries
    assert not kinds(entries, "call_ended"), entries  # the call went on until the caller hung up
    assert result.closed_at is None


def test_end_call_closes_a_browser_connection_normally_after_the_goodbye(server: ServeProcess) -> None:
    from tests.serve.serve_helpers import CallLog, open_ws, receive_until

    async def browser_call() -> CallLog:
        log = CallLog()
        async with open_ws(server.ws_url) as ws:
            await receive_until(ws, log, lambda log: bool(log.of("ready")), 10)
            await ws.send(json.dumps({"type": "text", "text": "(keypad: 1)"}))
            await receive_until(ws, log, lambda log: False, 30)  # until the server closes
        return log

    log = asyncio.run(browser_call())
    assert log.close_code == 1000, log
    assert log.said("assistant") == ["Thank you for calling the hotel.", "Goodbye!"], log
    assert log.audio_bytes > 24000, log  # both answers' audio came before the close
