"""HTTP tools called as the conversation calls them (invoke_tool), against a real local HTTP(S)
server: results, every failure as an error result, retries, TLS trust, and secrets kept out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from runner.config.model import HttpToolSpec
from runner.tools.http import call as http_call
from runner.tools.http import http_function
from runner.tools.invoke import ToolOutcome, invoke_tool
from tests.tools.http.http_servers import LocalHttpServer

SECRET = "tok-9f8e7d6c5b4a"
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"id": {"type": "string"}, "q": {"type": "string"}}}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalHttpServer]:
    with LocalHttpServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHttpServer]:
    with LocalHttpServer(tls_dir=tmp_path_factory.mktemp("ca")) as srv:
        yield srv


def call(spec: HttpToolSpec, arguments: Mapping[str, Any] | None = None, *, timeout_s: float = 10,
         environ: Mapping[str, str] | None = None, max_result_bytes: int = 65536) -> ToolOutcome:
    function = http_function(spec, variables={"lang": "fr"}, timeout_s=timeout_s,
                             environ={"TOKEN": SECRET} if environ is None else environ)
    return asyncio.run(invoke_tool(function, arguments or {}, input_schema=SCHEMA, timeout_s=timeout_s,
                                   name="lookup", max_result_bytes=max_result_bytes))


def result(outcome: ToolOutcome) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(outcome.result_json)
    return value


def error(outcome: ToolOutcome) -> str:
    assert not outcome.ok, outcome
    body = result(outcome)
    assert body["tool"] == "lookup"
    assert SECRET not in outcome.result_json
    text: str = body["error"]
    return text


def test_get_with_pointer_arguments_vars_and_secret_header(server: LocalHttpServer) -> None:
    spec = HttpToolSpec("GET", server.url + "/order/{id}?lang={vars.lang}",
                        headers=(("Authorization", "Bearer ${env:TOKEN}"),), result_pointer="/order")
    outcome = call(spec, {"id": "A/1 2"})
    assert outcome.ok, outcome
    assert result(outcome) == {"id": "A/1 2", "status": "shipped", "eta": "Friday"}
    seen = server.seen[-1]
    assert seen.path == "/order/A%2F1%202?lang=fr"
    assert seen.headers["authorization"] == f"Bearer {SECRET}"  # the server does get the secret


def test_a_secret_echoed_back_is_redacted_from_the_result(server: LocalHttpServer) -> None:
    spec = HttpToolSpec("GET", server.url + "/order/7", headers=(("Authorization", "Bearer ${env:TOKEN}"),))
    outcome = call(spec)
    assert outcome.ok
    assert SECRET not in outcome.result_json
    assert result(outcome)["auth"] == "Bearer ${env:TOKEN}"


def test_post_sends_the_arguments_by_default(server: LocalHttpServer) -> None:
    outcome = call(HttpToolSpec("POST", server.url + "/echo/hook"), {"id": "A1", "q": "Zoë"})
    assert outcome.ok
    echoed = result(outcome)
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"id": "A1", "q": "Zoë"}


def test_post_with_a_body_template(server: LocalHttpServer) -> None:
    body = json.dumps({"order": "{id}", "note": "from {vars.lang}", "key": "${env:TOKEN}"})
    outcome = call(HttpToolSpec("POST", server.url + "/echo/hook", body=body, result_pointer="/body"),
                   {"id": "A1"})
    assert outcome.ok
    sent = json.loads(server.seen[-1].body)
    assert sent == {"order": "A1", "note": "from fr", "key": SECRET}
    assert SECRET not in outcome.result_json  # the echo came back redacted


def test_template_result(server: LocalHttpServer) -> None:
    spec = HttpToolSpec("GET", server.url + "/order/{id}",
                        result_template="Order {{ json.order.id }} is {{ json.order.status }}.")
    assert result(call(spec, {"id": "B2"})) == {"result": "Order B2 is shipped."}


def test_status_outside_2xx_is_an_error_result(server: LocalHttpServer) -> None:
    message = error(call(HttpToolSpec("GET", server.url + "/status/404?k=${env:TOKEN}")))
    assert message.startswith(f"HTTP 404 Not Found from GET {server.url}/status/404: ")
    assert "status 404 as asked" in message


def test_timeout_is_an_error_result(server: LocalHttpServer) -> None:
    started = time.monotonic()
    message = error(call(HttpToolSpec("GET", server.url + "/slow/5", timeout_s=0.3)))
    assert "no complete response" in message and "within 0.3 s" in message
    assert time.monotonic() - started < 3


def test_the_tool_timeout_bounds_the_whole_call(server: LocalHttpServer) -> None:
    message = error(call(HttpToolSpec("GET", server.url + "/slow/5", retries=5), timeout_s=0.5))
    assert "timed out after 0.5 s" in message


def test_oversized_body_is_an_error_result(server: LocalHttpServer) -> None:
    message = error(call(HttpToolSpec("GET", server.url + "/big/5000", max_response_bytes=1024)))
    assert "at most 1024 are read" in message


def test_result_over_max_result_bytes_is_an_error_result(server: LocalHttpServer) -> None:
    message = error(call(HttpToolSpec("GET", server.url + "/big/5000"), max_result_bytes=1000))
    assert "result too large" in message


def test_invalid_json_is_an_error_result(server: LocalHttpServer) -> None:
    assert "not valid JSON (text/plain)" in error(call(HttpToolSpec("GET", server.url + "/text")))


def test_connection_refused_is_an_error_result() -> None:
    message = error(call(HttpToolSpec("GET", "http://127.0.0.1:9/x?key=${env:TOKEN}")))
    assert message.startswith("GET request failed: cannot connect to http://127.0.0.1:9/x")


def test_redirects_are_errors_not_followed(server: LocalHttpServer) -> None:
    assert error(call(HttpToolSpec("GET", server.url + "/redirect"))).startswith("HTTP 302")


def test_retries_until_success_for_idempotent_methods(server: LocalHttpServer) -> None:
    outcome = call(HttpToolSpec("GET", server.url + "/flaky/2?a", retries=3))
    assert outcome.ok and result(outcome) == {"attempts": 3}


def test_retries_are_bounded(server: LocalHttpServer) -> None:
    message = error(call(HttpToolSpec("GET", server.url + "/flaky/9?b", retries=1)))
    assert message.startswith("HTTP 503")
    assert sum(1 for s in server.seen if s.path == "/flaky/9?b") == 2


def test_post_is_never_retried(server: LocalHttpServer) -> None:
    # The loader refuses `retries` on POST; the callable ignores it as well.
    error(call(HttpToolSpec("POST", server.url + "/flaky/1?c", retries=3)))
    assert sum(1 for s in server.seen if s.path == "/flaky/1?c") == 1


def test_plain_http_to_another_host_is_refused_at_the_request() -> None:
    # The URL comes from a reference, so only the request can judge it.
    spec = HttpToolSpec("GET", "${env:BASE}/x")
    message = error(call(spec, environ={"BASE": "http://example.com"}))
    assert message == "refusing plain http to example.com: the tool allows only https (allow_http is not set)"


def test_missing_env_at_call_time_names_the_variable(server: LocalHttpServer) -> None:
    assert error(call(HttpToolSpec("GET", server.url + "/echo/?k=${env:NOPE}"))) == \
        "environment variable NOPE is not set"


def test_https_with_the_tools_ca_file(tls_server: LocalHttpServer) -> None:
    spec = HttpToolSpec("GET", tls_server.url + "/order/{id}", ca_file=tls_server.ca_file,
                        result_pointer="/order/id")
    outcome = call(spec, {"id": "T1"})
    assert outcome.ok, outcome
    assert result(outcome) == {"result": "T1"}


def test_https_without_trust_is_a_tls_error_result(tls_server: LocalHttpServer) -> None:
    message = error(call(HttpToolSpec("GET", tls_server.url + "/order/1")))
    assert "TLS: the certificate of" in message and "not accepted" in message


def test_https_trusts_ssl_cert_file(tls_server: LocalHttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The system trust comes from OpenSSL's defaults, which SSL_CERT_FILE replaces; tls_context is
    # cached per CA file, so a fresh cache is needed to see the variable.
    from runner.httpclient import tls_context

    assert tls_server.ca_file is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.ca_file))
    tls_context.cache_clear()
    try:
        assert call(HttpToolSpec("GET", tls_server.url + "/order/1")).ok
    finally:
        monkeypatch.delenv("SSL_CERT_FILE")
        tls_context.cache_clear()


def test_an_unreadable_ca_file_is_an_error_result(tls_server: LocalHttpServer, tmp_path: Any) -> None:
    spec = replace(HttpToolSpec("GET", tls_server.url + "/order/1"), ca_file=tmp_path / "gone.pem")
    assert "cannot use ca_file" in error(call(spec))


def test_a_secret_in_the_path_is_redacted_from_error_messages(server: LocalHttpServer) -> None:
    # Webhook URLs often carry their token in the path; the error names the path, not the token.
    message = error(call(HttpToolSpec("GET", server.url + "/status/404/${env:TOKEN}")))
    assert message.startswith(f"HTTP 404 Not Found from GET {server.url}/status/404/${{env:TOKEN}}: ")


def test_accept_defaults_to_json_unless_given(server: LocalHttpServer) -> None:
    default = result(call(HttpToolSpec("GET", server.url + "/echo/a")))
    assert default["headers"]["accept"] == "application/json"
    echoed = result(call(HttpToolSpec("GET", server.url + "/echo/b", headers=(("accept", "text/csv"),))))
    assert echoed["headers"]["accept"] == "text/csv"


def test_an_unforeseen_failure_is_scrubbed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the client library might raise one day can quote what it was given, the secret
    # included: the model gets the reference instead (the library is replaced by one that does so).
    async def refusing(method: str, url: str, *, headers: Mapping[str, str], **kwargs: Any) -> None:
        raise ValueError(f"bad header value {headers['X-Key']!r}")

    monkeypatch.setattr(http_call, "request", refusing)
    spec = HttpToolSpec("GET", "https://api.example/", headers=(("X-Key", "${env:TOKEN}"),))
    assert error(call(spec)) == "ValueError: bad header value '${env:TOKEN}'"
