"""A real local HTTP(S) server for the HTTP tool tests, run in a thread of the test process.

Paths choose the behaviour (each answer is what a real API might do, good or bad):

  /echo/...          200, JSON of the request: method, path, query, headers, body
  /status/NNN        status NNN with a small JSON body
  /slow/SECONDS      waits, then 200 {"ok": true}
  /big/N             200 with a JSON string of about N bytes (Content-Length set)
  /endless           200 with no Content-Length, bytes until the client goes away
  /text              200 text/plain that is not JSON
  /flaky/N           503 for the first N requests to this path, then 200 {"attempts": ...}
  /redirect          302 to /echo/redirected
  /order/ID          200 a JSON order (for the agent end-to-end test)

TLS: `LocalHttpServer(tls_dir=...)` serves https with a certificate for 127.0.0.1 and localhost
issued by a CA made there (the project's own runner.emulator.certs); `ca_file` is its path.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from runner.emulator.certs import load_identity, server_context


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, value: Any) -> None:
        self._answer(status, json.dumps(value).encode())

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(self.path)
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.server.seen.append(seen)
        segments = parts.path.strip("/").split("/")
        head = segments[0]
        if head == "echo":
            self._json(200, {"method": self.command, "path": parts.path, "query": parts.query,
                             "headers": seen.headers, "body": body.decode("utf-8", "replace")})
        elif head == "status":
            code = int(segments[1])
            self._json(code, {"detail": f"status {code} as asked"})
        elif head == "slow":
            time.sleep(float(segments[1]))
            self._json(200, {"ok": True})
        elif head == "big":
            self._json(200, {"data": "x" * int(segments[1])})
        elif head == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(10_000):
                    self.wfile.write(b"y" * 65536)
            except OSError:
                pass
            self.close_connection = True
        elif head == "text":
            self._answer(200, b"hello, not json", "text/plain")
        elif head == "flaky":
            self.server.counts[parts.path] += 1
            attempts = self.server.counts[parts.path]
            if attempts <= int(segments[1]):
                self._json(503, {"detail": "try again"})
            else:
                self._json(200, {"attempts": attempts})
        elif head == "redirect":
            self.send_response(302)
            self.send_header("Location", "/echo/redirected")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif head == "order":
            order_id = urllib.parse.unquote(segments[1])
            self._json(200, {"order": {"id": order_id, "status": "shipped", "eta": "Friday"},
                             "auth": seen.headers.get("authorization", "")})
        else:
            self._json(404, {"detail": "no such path"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    seen: list[Seen]
    counts: Counter[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (a test's timeout, a size cap) is expected here


class LocalHttpServer:
    """`with LocalHttpServer() as server:` serves on 127.0.0.1 (a free port) until the block ends."""

    def __init__(self, tls_dir: Path | None = None) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.seen = []
        self._server.counts = Counter()
        self.ca_file: Path | None = None
        scheme = "http"
        if tls_dir is not None:
            identity = load_identity(tls_dir)
            context = server_context(identity, ["127.0.0.1", "localhost"])
            context.set_alpn_protocols(["http/1.1"])
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.ca_file = identity.ca_file
            scheme = "https"
        self.port = self._server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def seen(self) -> list[Seen]:
        return self._server.seen

    def __enter__(self) -> LocalHttpServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
