"""builtin:transfer's own behaviour, through the real tool invocation and a real local HTTP server
standing in for api.twilio.com: destinations, TwiML, the allow list, refused and unreachable APIs,
missing credentials. (The whole path, from a phone call through `agent-run serve`: test_phone.py.)"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runner.config.model import TransferSpec
from runner.conversation import control
from runner.conversation.control import PhoneCall
from runner.tools.builtins import (
    BUILTINS,
    TWILIO_API_ENV,
    destination_problem,
    transfer_handler,
    transfer_twiml,
)
from runner.tools.invoke import invoke_tool

SCHEMA = {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}


@dataclass
class StandInCall:
    """What the tool asks of its conversation's call control (runner.conversation.control.CallControl)."""

    phone: PhoneCall | None
    transferred_calls: int = 0
    waited: list[float] = field(default_factory=list)

    async def wait_played(self, limit_s: float = 8.0) -> bool:
        self.waited.append(limit_s)
        return True

    def transferred(self) -> None:
        self.transferred_calls += 1


@pytest.fixture
def api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            seen.append({"path": self.path, "body": body})
            status = 404 if "CAgone" in self.path else 200
            data = json.dumps({"message": "The requested resource was not found"} if status == 404
                              else {"status": "in-progress"}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads `seen`
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def transfer(call: StandInCall | None, to: str, spec: TransferSpec | None = None) -> dict[str, Any]:
    """The tool's JSON result, called as a conversation calls it, with `call` as its call control."""
    function = transfer_handler(spec or TransferSpec())

    async def invoke() -> dict[str, Any]:
        outcome = await invoke_tool(function, {"to": to}, input_schema=SCHEMA, timeout_s=10, name="transfer")
        result: dict[str, Any] = json.loads(outcome.result_json)
        return result

    context = contextvars.copy_context()
    context.run(control._CURRENT.set, call)  # type: ignore[arg-type]
    return context.run(asyncio.run, invoke())


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "2" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "the-token")


def test_twiml_for_numbers_and_sip_addresses() -> None:
    assert transfer_twiml("+1 (555) 123-4567") == \
        "<Response><Dial><Number>+15551234567</Number></Dial></Response>"
    assert transfer_twiml("sip:desk@example.com;transport=tls") == \
        "<Response><Dial><Sip>sip:desk@example.com;transport=tls</Sip></Dial></Response>"
    for bad in ("the front desk", "sip:<script>", "+1", "12345678901234567890", ""):
        assert destination_problem(bad) is not None, bad


def test_a_transfer_posts_to_the_api_and_ends_the_call(api: tuple[str, list[dict[str, Any]]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = api
    monkeypatch.setenv(TWILIO_API_ENV, url)
    call = StandInCall(PhoneCall("twilio", "CA" + "5" * 32, "AC" + "9" * 32))
    assert transfer(call, "sip:desk@example.com") == {"transferred": True, "to": "sip:desk@example.com"}
    assert call.transferred_calls == 1 and call.waited  # the words before it were played first
    assert seen[0]["path"] == f"/2010-04-01/Accounts/AC{'9' * 32}/Calls/CA{'5' * 32}.json"


def test_outside_a_phone_call_the_result_is_an_error() -> None:
    assert "only works on a phone call" in transfer(None, "+15551234567")["error"]
    assert "only works on a phone call" in transfer(StandInCall(None), "+15551234567")["error"]
    # The registered default handler behaves the same.
    assert BUILTINS["transfer"].__name__ == "transfer"


def test_the_allow_list_refuses_other_destinations_before_any_request(
        api: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = api
    monkeypatch.setenv(TWILIO_API_ENV, url)
    call = StandInCall(PhoneCall("twilio", "CA1"))
    spec = TransferSpec(allow=("+1 555 123 4567",))
    assert "not allowed" in transfer(call, "+15550000000", spec)["error"]
    assert transfer(call, "+1-555-123-4567", spec)["transferred"] is True  # spelt differently, same number
    assert len(seen) == 1 and call.transferred_calls == 1


def test_a_refusing_api_and_an_unreachable_one_are_error_results(api: tuple[str, list[dict[str, Any]]],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = api
    monkeypatch.setenv(TWILIO_API_ENV, url)
    call = StandInCall(PhoneCall("twilio", "CAgone"))
    error = transfer(call, "+15551234567")["error"]
    assert error == "Twilio refused the transfer: HTTP 404 The requested resource was not found"
    assert call.transferred_calls == 0
    monkeypatch.setenv(TWILIO_API_ENV, "http://127.0.0.1:9")  # nothing listens on the discard port
    assert "Twilio did not answer the transfer request" in transfer(call, "+15551234567")["error"]
    monkeypatch.setenv(TWILIO_API_ENV, "http://api.example.com")  # plain http off this machine
    assert "must be an https:// URL" in transfer(call, "+15551234567")["error"]


def test_missing_credentials_name_the_variable_never_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    error = transfer(StandInCall(PhoneCall("twilio", "CA1")), "+15551234567")["error"]
    assert "environment variable TWILIO_AUTH_TOKEN is not set" in error
    assert "AC" + "2" * 32 not in error
