"""A raw TLS + HTTP/2 Bedrock client built on the h2 library (not the SDK): it signs the request
and every event by hand (SigV4 spec) so a test controls the connection byte by byte, e.g. to send
GOAWAY and close the socket in the middle of an answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import h2.config
import h2.connection
import h2.events

from runner.emulator.eventstream import (
    EventStreamDecoder,
    Timestamp,
    encode_headers,
    encode_message,
)

STREAMING = "STREAMING-AWS4-HMAC-SHA256-EVENTS"


def _hmac(key: bytes, msg: str | bytes) -> bytes:
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, hashlib.sha256).digest()


class RawClient:
    """One bidirectional stream on its own connection, driven synchronously."""

    def __init__(self, env: Mapping[str, str], model_id: str, *, timeout_s: float = 10.0) -> None:
        url = urlsplit(env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
        self._secret = env["AWS_SECRET_ACCESS_KEY"]
        self._key_id = env["AWS_ACCESS_KEY_ID"]
        self._region = env["AWS_REGION"]
        context = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((url.hostname, url.port), timeout=timeout_s)
        self.sock = context.wrap_socket(raw, server_hostname=url.hostname)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self._decoder = EventStreamDecoder()
        self.events: list[dict[str, Any]] = []
        self.stream_ended = False
        self.status: str | None = None
        self._now = datetime.now(UTC).replace(microsecond=0)
        self._day = self._now.strftime("%Y%m%d")
        self._key = _hmac(_hmac(_hmac(_hmac(b"AWS4" + self._secret.encode(), self._day), self._region),
                                "bedrock"), "aws4_request")
        self._prior = self._request(f"{url.hostname}:{url.port}", model_id)

    def _scope(self) -> str:
        return f"{self._day}/{self._region}/bedrock/aws4_request"

    def _request(self, host: str, model_id: str) -> str:
        path = f"/model/{quote(model_id, safe='')}/invoke-with-bidirectional-stream"
        stamp = self._now.strftime("%Y%m%dT%H%M%SZ")
        headers = {"content-type": "application/vnd.amazon.eventstream", "host": host,
                   "x-amz-content-sha256": STREAMING, "x-amz-date": stamp}
        names = sorted(headers)
        canonical = "\n".join(["POST", quote(path, safe="/"), "",
                               "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names), STREAMING])
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{self._scope()}\n{digest}"
        signature = _hmac(self._key, to_sign).hex()
        auth = (f"AWS4-HMAC-SHA256 Credential={self._key_id}/{self._scope()}, "
                f"SignedHeaders={';'.join(names)}, Signature={signature}")
        self.stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(self.stream_id, [(":method", "POST"), (":scheme", "https"), (":path", path),
                                              (":authority", host), *[(n, headers[n]) for n in names],
                                              ("authorization", auth)])
        self.flush()
        return signature

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, *events: Mapping[str, Any]) -> None:
        for event in events:
            body = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
            inner = encode_message({":message-type": "event", ":event-type": "chunk",
                                    ":content-type": "application/json"}, body)
            date = {":date": Timestamp(int(self._now.timestamp() * 1000))}
            stamp = self._now.strftime("%Y%m%dT%H%M%SZ")
            to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, self._scope(), self._prior,
                                 hashlib.sha256(encode_headers(date)).hexdigest(),
                                 hashlib.sha256(inner).hexdigest()])
            signature = _hmac(self._key, to_sign)
            self._prior = signature.hex()
            self.h2.send_data(self.stream_id, encode_message({**date, ":chunk-signature": signature}, inner))
        self.flush()

    def read_until(self, predicate: Any) -> None:
        """Read frames until `predicate(self)` holds (or the stream ends)."""
        while not predicate(self) and not self.stream_ended:
            data = self.sock.recv(65536)
            if not data:
                self.stream_ended = True
                return
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    self.status = dict(event.headers).get(b":status", b"").decode()
                elif isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    for message in self._decoder.feed(event.data):
                        payload = json.loads(message.payload) if message.payload else {}
                        if "bytes" in payload:
                            self.events.append(json.loads(base64.b64decode(payload["bytes"])))
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    self.stream_ended = True
            self.flush()

    def names(self) -> list[str]:
        return [next(iter(e["event"])) for e in self.events]

    def goaway_and_close(self) -> None:
        """What a client shutting down mid-answer does: GOAWAY, then the socket closes."""
        self.h2.close_connection()
        self.flush()
        self.sock.close()
