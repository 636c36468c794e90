"""runner.httpclient against a real local HTTP(S) server: bodies, caps, timeouts, TLS trust."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.httpclient import (
    HttpConnectionError,
    HttpTimeout,
    HttpTlsError,
    HttpTooLarge,
    request,
    where,
)
from tests.tools.http.http_servers import LocalHttpServer


@pytest.fixture(scope="module")
def server() -> Iterator[LocalHttpServer]:
    with LocalHttpServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHttpServer]:
    with LocalHttpServer(tls_dir=tmp_path_factory.mktemp("ca")) as srv:
        yield srv


def test_get_returns_status_headers_and_body(server: LocalHttpServer) -> None:
    response = asyncio.run(request("GET", f"{server.url}/echo/a%2Fb?q=1", headers={"X-Test": "yes"}))
    assert response.status == 200 and response.ok
    assert response.headers["content-type"] == "application/json"
    echoed = json.loads(response.body)
    assert echoed["method"] == "GET"
    assert echoed["query"] == "q=1"
    assert echoed["headers"]["x-test"] == "yes"
    assert server.seen[-1].path == "/echo/a%2Fb?q=1"  # percent-encoding kept as sent


def test_json_body_is_sent_as_utf8_json(server: LocalHttpServer) -> None:
    response = asyncio.run(request("POST", f"{server.url}/echo/", json={"name": "Zoë", "n": 2}))
    echoed = json.loads(response.body)
    assert json.loads(echoed["body"]) == {"name": "Zoë", "n": 2}
    assert echoed["headers"]["content-type"] == "application/json"


def test_form_body(server: LocalHttpServer) -> None:
    response = asyncio.run(request("POST", f"{server.url}/echo/", form={"Twiml": "<Dial>+1 555</Dial>"}))
    echoed = json.loads(response.body)
    assert echoed["body"] == "Twiml=%3CDial%3E%2B1+555%3C%2FDial%3E"
    assert echoed["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_only_one_body_kind() -> None:
    with pytest.raises(ValueError, match="at most one"):
        asyncio.run(request("POST", "http://127.0.0.1:9/", json={}, content=b"x"))


def test_non_2xx_is_a_response_not_an_error(server: LocalHttpServer) -> None:
    response = asyncio.run(request("GET", f"{server.url}/status/404"))
    assert response.status == 404 and not response.ok
    assert json.loads(response.body) == {"detail": "status 404 as asked"}


def test_redirects_are_not_followed(server: LocalHttpServer) -> None:
    response = asyncio.run(request("GET", f"{server.url}/redirect"))
    assert response.status == 302
    assert response.headers["location"] == "/echo/redirected"


def test_timeout_is_typed_and_bounded(server: LocalHttpServer) -> None:
    started = time.monotonic()
    with pytest.raises(HttpTimeout, match=r"within 0.3 s"):
        asyncio.run(request("GET", f"{server.url}/slow/5", timeout_s=0.3))
    assert time.monotonic() - started < 3


def test_declared_oversized_body_is_refused(server: LocalHttpServer) -> None:
    with pytest.raises(HttpTooLarge) as info:
        asyncio.run(request("GET", f"{server.url}/big/5000", max_response_bytes=1000))
    assert info.value.limit == 1000 and info.value.size is not None and info.value.size > 5000


def test_undeclared_oversized_body_is_cut_off_while_reading(server: LocalHttpServer) -> None:
    with pytest.raises(HttpTooLarge, match="larger than 100000 bytes"):
        asyncio.run(request("GET", f"{server.url}/endless", max_response_bytes=100_000, timeout_s=10))


def test_connection_refused_is_typed() -> None:
    with pytest.raises(HttpConnectionError, match=re.escape("cannot connect to http://127.0.0.1:9/x")):
        asyncio.run(request("GET", "http://127.0.0.1:9/x?key=SECRET", timeout_s=5))


def test_errors_never_show_the_query_or_headers() -> None:
    with pytest.raises(HttpConnectionError) as info:
        asyncio.run(request("GET", "http://127.0.0.1:9/x?key=s3cr3t", headers={"Authorization": "s3cr3t"}))
    assert "s3cr3t" not in str(info.value)
    assert where("https://user:pw@example.com:8443/p/q?token=abc") == "https://example.com:8443/p/q"


def test_https_with_the_ca_file(tls_server: LocalHttpServer) -> None:
    assert tls_server.ca_file is not None
    response = asyncio.run(request("GET", f"{tls_server.url}/echo/tls", ca_file=tls_server.ca_file))
    assert response.status == 200
    assert json.loads(response.body)["path"] == "/echo/tls"


def test_https_without_trusting_the_ca_is_a_tls_error(tls_server: LocalHttpServer) -> None:
    with pytest.raises(HttpTlsError, match="certificate"):
        asyncio.run(request("GET", f"{tls_server.url}/echo/tls", timeout_s=5))


def test_https_to_a_plain_http_server_is_a_tls_error(server: LocalHttpServer) -> None:
    url = server.url.replace("http://", "https://")
    with pytest.raises(HttpTlsError, match="WRONG_VERSION_NUMBER"):
        asyncio.run(request("GET", f"{url}/echo/", timeout_s=5))


def test_a_missing_ca_file_is_an_os_error(tmp_path: Path, tls_server: LocalHttpServer) -> None:
    with pytest.raises(OSError):
        asyncio.run(request("GET", f"{tls_server.url}/echo/", ca_file=tmp_path / "missing.pem"))


def test_cancellation_propagates_promptly(server: LocalHttpServer) -> None:
    async def main() -> float:
        task = asyncio.create_task(request("GET", f"{server.url}/slow/5", timeout_s=30))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(main()) < 2


def test_https_by_name_through_the_resolver(tls_server: LocalHttpServer) -> None:
    url = tls_server.url.replace("127.0.0.1", "localhost")  # the certificate names both
    response = asyncio.run(request("GET", f"{url}/echo/named", ca_file=tls_server.ca_file, timeout_s=10))
    assert response.status == 200


def test_an_unknown_host_is_a_connection_error() -> None:
    with pytest.raises((HttpConnectionError, HttpTimeout)):
        asyncio.run(request("GET", "https://no-such-host.invalid/x", timeout_s=5))


def test_a_hung_name_lookup_does_not_hold_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # getaddrinfo cannot be interrupted; asyncio.run joins the default executor at exit, so a lookup
    # there would keep the program for as long as it hangs. Ours runs in a daemon thread.
    release = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: release.wait(30) and [])
    started = time.monotonic()
    try:
        with pytest.raises(HttpTimeout):
            asyncio.run(request("GET", "https://hangs.example/x", timeout_s=0.3))
        assert time.monotonic() - started < 2
    finally:
        release.set()
