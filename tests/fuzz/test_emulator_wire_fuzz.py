"""End to end: a raw TLS + HTTP/2 client (tests/emulator/raw_client.py) sends mutated frames to a
running `agent-run emulate` process. The malformed stream gets an error and is closed; the
process keeps serving, and a well-formed client is answered afterwards; its log has no traceback.

Network front ends (WebSocket messages, Twilio media frames, plain HTTP requests) do not exist
yet; when one lands, its fuzz target goes next to this one with the same shape: a module-scoped
server process, generated and mutated messages on one connection each, the connection refused
with an error, the process alive and serving a well-formed client at the end (see README.md here).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.emulator.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    Timestamp,
    encode_headers,
    encode_message,
)
from tests.emulator import fakes
from tests.emulator.raw_client import RawClient, _hmac
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.invariant import REPO
from tests.fuzz.test_wire_fuzz import mutated_frames, mutated_payload

MODEL = "amazon.nova-2-sonic-v1:0"
CHUNK_HEADERS = {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"}


class FuzzClient(RawClient):
    """RawClient that can sign any inner bytes, send unsigned bytes, and record what comes back."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env, MODEL, timeout_s=10.0)
        self.messages: list[dict[str, Any]] = []
        self.decoder = EventStreamDecoder()

    def send_signed(self, inner: bytes) -> None:
        date = {":date": Timestamp(int(self._now.timestamp() * 1000))}
        stamp = self._now.strftime("%Y%m%dT%H%M%SZ")
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                stamp,
                self._scope(),
                self._prior,
                hashlib.sha256(encode_headers(date)).hexdigest(),
                hashlib.sha256(inner).hexdigest(),
            ]
        )
        signature = _hmac(self._key, to_sign)
        self._prior = signature.hex()
        self.send_unsigned(encode_message({**date, ":chunk-signature": signature}, inner))

    def send_unsigned(self, data: bytes) -> None:
        try:
            step = self.h2.max_outbound_frame_size
            for start in range(0, len(data), step):  # within one frame each (the window is 64 KiB)
                self.h2.send_data(self.stream_id, data[start : start + step])
            self.flush()
        except (h2.exceptions.ProtocolError, OSError):
            pass  # the emulator already closed the stream: that is an answer too

    def send_payload(self, payload: bytes) -> None:
        self.send_signed(
            encode_message(
                dict(CHUNK_HEADERS), json.dumps({"bytes": base64.b64encode(payload).decode()}).encode()
            )
        )

    def read_to_end(self, timeout_s: float) -> bool:
        """Collect messages until the stream ends (True) or `timeout_s` passes (False)."""
        deadline = time.monotonic() + timeout_s
        self.sock.settimeout(0.2)
        while not self.stream_ended and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except (ssl.SSLError, OSError):
                return True
            if not data:
                return True
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                return True
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    self.status = dict(event.headers).get(b":status", b"").decode()
                elif isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    for message in self.decoder.feed(event.data):
                        self.messages.append({k: v for k, v in message.headers.items()})
                elif isinstance(
                    event, h2.events.StreamEnded | h2.events.StreamReset | h2.events.ConnectionTerminated
                ):
                    self.stream_ended = True
            self.flush()
        return self.stream_ended

    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get(":message-type") in ("error", "exception")]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:
    log = tmp_path_factory.mktemp("fuzz-emulate") / "emulator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "emulate", "--port", "0", "--time-limit", "600"],
            cwd=REPO,
            env={**_env(), "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, _wait_ready(proc, log), log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text()
        if "# agent-run emulator listening on" in text:
            env: dict[str, str] = {}
            for line in text.splitlines():
                if line.startswith("export "):
                    for word in shlex.split(line.removeprefix("export ")):
                        key, _, value = word.partition("=")
                        env[key] = value
            return env
        assert proc.poll() is None, f"emulator exited {proc.returncode}:\n{text}"
        time.sleep(0.05)
    raise AssertionError(f"emulator not ready:\n{log.read_text()}")


def _opening() -> list[bytes]:
    return [json.dumps(e).encode() for e in fakes.opening()]


_CHUNK_BODIES = [
    b"",
    b"{",
    b"[]",
    b'{"bytes": 1}',
    b'{"bytes": "***"}',
    b'{"bytes": "' + b"A" * 3 + b'"}',
    b"[" * 50_000,
    b'{"bytes": ' + b"[" * 50_000 + b"}",
    b'{"bytes": ' + b"9" * 5000 + b"}",
    b"\xff\xfe{}",
    b'{"bytes": "e30="}\x00',
]


@st.composite
def attacks(draw: st.DrawFn, kind: str) -> tuple[str, list[bytes]]:
    """(kind, what to send after a valid opening, or instead of it)."""
    if kind == "chunk_json":  # a valid inner frame whose JSON body is malformed
        body = draw(st.one_of(st.sampled_from(_CHUNK_BODIES), st.binary(max_size=64)))
        return kind, [encode_message(dict(CHUNK_HEADERS), body)]
    if kind == "outer":
        return kind, draw(st.lists(mutated_frames(), min_size=1, max_size=3))
    if kind == "inner":
        return kind, draw(st.lists(mutated_frames(), min_size=1, max_size=2))
    if kind == "payload":
        event = draw(st.sampled_from([*fakes.opening(), fakes.audio_start(), fakes.content_end("sys")]))
        return kind, [draw(mutated_payload(event))]
    return kind, [b"\x00\x00\x00\x10\x00\x00\x00\x00" + draw(st.binary(min_size=8, max_size=64))]


KINDS = ["outer", "inner", "chunk_json", "payload", "garbage"]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_input_closes_that_stream_with_an_error_and_the_emulator_keeps_serving(
    emulator: tuple[subprocess.Popen[bytes], dict[str, str], Path], kind: str
) -> None:
    _fuzz_one_kind(emulator, kind)


def _fuzz_one_kind(emulator: tuple[subprocess.Popen[bytes], dict[str, str], Path], kind: str) -> None:
    @fuzz_settings(3)
    @given(attack=attacks(kind), after_opening=st.booleans())
    def attack_once(attack: tuple[str, list[bytes]], after_opening: bool) -> None:
        _attack(emulator, attack, after_opening)

    attack_once()


def _attack(
    emulator: tuple[subprocess.Popen[bytes], dict[str, str], Path],
    attack: tuple[str, list[bytes]],
    after_opening: bool,
) -> None:
    proc, env, log = emulator
    kind, items = attack
    client = FuzzClient(env)
    try:
        if after_opening:
            for payload in _opening():
                client.send_payload(payload)
        for item in items:
            if kind in ("outer", "garbage"):
                client.send_unsigned(item)
            elif kind in ("inner", "chunk_json"):
                client.send_signed(item)
            else:
                client.send_payload(item)
        # Must be refused: garbage, a malformed chunk body, a broken inner frame. Anything else may
        # also be an incomplete frame or a still-valid event, which the emulator waits on.
        refused = kind in ("garbage", "chunk_json") or (kind == "inner" and _broken_frame(items[0]))
        ended = client.read_to_end(timeout_s=8.0 if refused else 1.5)
        if refused:
            assert ended and client.errors(), (kind, items, client.messages)
    finally:
        client.close()
    assert proc.poll() is None, log.read_text()[-3000:]


def _broken_frame(data: bytes) -> bool:
    try:
        EventStreamDecoder().feed(data)
    except EventStreamError:
        return True
    return False


_PATH = b"/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"
_HEADER_BYTES = st.one_of(
    st.sampled_from(
        [
            b"\xff",
            b"\xc3",
            b"\xed\xa0\x80",
            b"\x00",
            b"\xef\xbb\xbf",
            b"",
            b"x" * 8000,
            b"AWS4-HMAC-SHA256 Credential=\xc3\xa9/a/b/c/aws4_request, "
            b"SignedHeaders=host, Signature=" + b"0" * 64,
        ]
    ),
    st.binary(max_size=40),
)


@st.composite
def request_headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":path", _PATH),
        (b":authority", b"127.0.0.1"),
        (b"content-type", b"application/vnd.amazon.eventstream"),
        (b"x-amz-date", b"20261121T190856Z"),
        (
            b"authorization",
            b"AWS4-HMAC-SHA256 Credential=a/20261121/us-east-1/bedrock/aws4_request, "
            b"SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64,
        ),
    ]
    index = draw(st.integers(0, len(headers) - 1))
    name, value = headers[index]
    value = (
        draw(st.sampled_from([value[:3], value + b"/"])) + draw(_HEADER_BYTES)
        if draw(st.booleans())
        else draw(_HEADER_BYTES)
    )
    headers[index] = (
        draw(st.sampled_from([name, name + b"\xff", b"x-\xff"])) if draw(st.booleans()) else name,
        value,
    )
    return headers


@fuzz_settings(6)
@given(headers=request_headers())
def test_malformed_request_headers_get_an_error_and_the_emulator_keeps_serving(
    emulator: tuple[subprocess.Popen[bytes], dict[str, str], Path], headers: list[tuple[bytes, bytes]]
) -> None:
    proc, env, _log = emulator
    url = urlsplit(env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
    context = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(
        socket.create_connection((url.hostname, url.port), timeout=10), server_hostname=url.hostname
    )
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
    )
    answered: list[str] = []
    try:
        conn.initiate_connection()
        conn.send_headers(1, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 8
        sock.settimeout(0.5)
        while not answered and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                answered.append("closed")
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answered.append(dict(event.headers)[b":status"].decode())
                elif isinstance(event, h2.events.ConnectionTerminated | h2.events.StreamReset):
                    answered.append(type(event).__name__)
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    assert answered and answered[0] != "closed", (
        answered
    )  # a status, a reset or a GOAWAY; not a dropped socket
    assert answered[0] != "200"
    assert proc.poll() is None


def test_a_chunk_body_nested_too_deeply_is_a_serialization_error(
    emulator: tuple[subprocess.Popen[bytes], dict[str, str], Path],
) -> None:
    # Found by the chunk_json target: json.loads raised RecursionError (not a ValueError) in the
    # emulator's _unwrap_chunk; asyncio dropped the connection with a "Fatal error" traceback.
    proc, env, _log = emulator
    client = FuzzClient(env)
    try:
        client.send_signed(encode_message(dict(CHUNK_HEADERS), b'{"bytes": ' + b"[" * 50_000 + b"}"))
        assert client.read_to_end(timeout_s=8.0)
    finally:
        client.close()
    assert [m.get(":error-code") for m in client.errors()] == ["SerializationException"]
    assert proc.poll() is None


def test_a_lone_surrogate_in_typed_text_is_a_validation_exception(
    emulator: tuple[subprocess.Popen[bytes], dict[str, str], Path],
) -> None:
    # Found by the long run: the validator's size check encoded the text and raised
    # UnicodeEncodeError; the handler failed with internalServerException and a traceback.
    proc, env, _ = emulator
    client = FuzzClient(env)
    try:
        for payload in _opening():
            client.send_payload(payload)
        for event in (fakes.audio_start(), fakes.text_start("t", "USER", interactive=True)):
            client.send_payload(json.dumps(event).encode())
        client.send_payload(json.dumps(fakes.text_input("t", "Hello")).encode().replace(b"Hello", b"\\ud800"))
        assert client.read_to_end(timeout_s=8.0)
    finally:
        client.close()
    assert [m.get(":exception-type") for m in client.errors()] == ["validationException"], client.messages
    assert proc.poll() is None


def test_after_the_fuzzing_a_well_formed_client_is_served_and_nothing_crashed(
    emulator: tuple[subprocess.Popen[bytes], dict[str, str], Path],
) -> None:
    proc, env, log = emulator
    client = RawClient(env, MODEL)
    try:
        client.send(
            *fakes.opening(),
            fakes.audio_start(),
            fakes.text_start("t", "USER", interactive=True),
            fakes.text_input("t", "Hello after the fuzzing?"),
            fakes.content_end("t"),
        )
        client.read_until(lambda c: "audioOutput" in c.names())
    finally:
        client.sock.close()
    assert client.status == "200" and "audioOutput" in client.names()
    assert proc.poll() is None
    text = log.read_text()
    for bad in ("Traceback", "Fatal error", "handler failed", "emulator task failed"):
        assert bad not in text, text[-5000:]
