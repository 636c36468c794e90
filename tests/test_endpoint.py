"""runner/transports/endpoint.py: which endpoint URLs a run and `check` accept (issue 13)."""

from __future__ import annotations

import pytest

from runner.transports.endpoint import endpoint_problem, run_endpoint


@pytest.mark.parametrize("url", ["https://bedrock-runtime.us-east-1.amazonaws.com", "https://127.0.0.1:8443",
                                 "http://localhost:1", "https://[::1]:65535", "https://h/some/path",
                                 "HTTPS://Host.Example"])
def test_good_endpoints(url: str) -> None:
    assert endpoint_problem(url) is None


@pytest.mark.parametrize(("url", "problem"), [
    ("", "without spaces or control characters"),
    ("https://", "has no host name"),
    ("https://:443", "has no host name"),
    ("https:///path", "has no host name"),
    ("ftp://x", "must start with https://"),
    ("x", "must start with https://"),
    ("https://h:99999", "Port out of range"),
    ("https://h:-1", "is not a valid URL"),
    ("https://h:0", "port 0 cannot be connected to"),
    ("https://[::1", "is not a valid URL"),
    ("https://u@h", "user name or password"),
    ("https://h?x=1", "query"),
    ("https://h#frag", "fragment"),
    ("https://h\x00", "control characters"),
    ("https://h\n", "control characters"),
])
def test_bad_endpoints(url: str, problem: str) -> None:
    found = endpoint_problem(url)
    assert found is not None and problem in found, found


def test_the_run_endpoint_comes_from_the_agent_then_the_variables() -> None:
    env = {"AWS_ENDPOINT_URL": "https://general", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "https://bedrock"}
    assert run_endpoint("https://agent", env) == ("https://agent", "model.endpoint")
    assert run_endpoint(None, env) == ("https://bedrock", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
    general = {"AWS_ENDPOINT_URL": "https://general"}
    assert run_endpoint(None, general) == ("https://general", "AWS_ENDPOINT_URL")
    assert run_endpoint(None, {}) is None
