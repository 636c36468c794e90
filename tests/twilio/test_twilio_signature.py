from __future__ import annotations

import xml.etree.ElementTree as ET

from runner.serve.frontends.twilio import dtmf_text, twiml_connect
from runner.serve.frontends.twilio_signature import candidate_urls, compute_signature, signature_valid

# Twilio's documented example (auth token 12345).
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
          ("From", "+12349013030"), ("To", "+18005551212")]
EXPECTED = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_documented_example() -> None:
    assert compute_signature("12345", URL, PARAMS) == EXPECTED
    # Order of the parameters as sent does not matter: they are sorted.
    assert compute_signature("12345", URL, list(reversed(PARAMS))) == EXPECTED


def test_valid_and_invalid() -> None:
    assert signature_valid("12345", EXPECTED, [URL], PARAMS)
    assert not signature_valid("12346", EXPECTED, [URL], PARAMS)
    assert not signature_valid("12345", EXPECTED, [URL], [*PARAMS[:-1], ("To", "+18005551213")])
    assert not signature_valid("12345", EXPECTED, [URL + "&x=1"], PARAMS)
    assert not signature_valid("12345", None, [URL], PARAMS)
    assert not signature_valid("12345", "", [URL], PARAMS)
    assert not signature_valid("12345", "not base64 at all", [URL], PARAMS)


def test_repeated_names_sort_by_value() -> None:
    a = compute_signature("t", "https://h/p", [("x", "2"), ("x", "1"), ("a", "")])
    assert a == compute_signature("t", "https://h/p", [("a", ""), ("x", "1"), ("x", "2")])


def test_candidate_urls_cover_a_tls_proxy_and_default_ports() -> None:
    assert candidate_urls("http://example.com/twilio/voice?x=1") == [
        "http://example.com/twilio/voice?x=1", "http://example.com:80/twilio/voice?x=1",
        "https://example.com/twilio/voice?x=1", "https://example.com:443/twilio/voice?x=1"]
    assert candidate_urls("ws://127.0.0.1:8080/twilio/stream") == [
        "ws://127.0.0.1:8080/twilio/stream", "wss://127.0.0.1:8080/twilio/stream"]
    # Signed as Twilio called it (https), seen as plain http behind the proxy: still valid.
    sig = compute_signature("tok", "https://example.com/twilio/voice", [("CallSid", "CA1")])
    seen = candidate_urls("http://example.com/twilio/voice")
    assert signature_valid("tok", sig, seen, [("CallSid", "CA1")])


def test_twiml_escapes_parameters() -> None:
    xml = twiml_connect("wss://example.com/twilio/stream",
                        {"customer": 'Ada "<&>" Lovelace', "note": "a\nb", "From": "+1555"})
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream ')
    root = ET.fromstring(xml.split("?>", 1)[1])
    stream = root.find("Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://example.com/twilio/stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"customer": 'Ada "<&>" Lovelace', "note": "a\nb", "From": "+1555"}
    assert "<&>" not in xml


def test_dtmf_text() -> None:
    assert dtmf_text("12#") == "(keypad: 1 2 #)"
