"""`http:` tools in agent files: check_agent's located problems and the frozen config it builds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.config.loader import check_agent, load_agent
from runner.config.model import HttpToolSpec
from runner.errors import ConfigError

HEAD = """\
version: 1
name: t
model: {id: amazon.nova-2-sonic-v1:0}
voice: matthew
vars: {shop: demo}
system_prompt: Hello.
tools:
  - name: lookup
    description: Look an order up.
    input_schema:
      type: object
      properties: {order_id: {type: string}}
"""


def write(tmp_path: Path, tool_tail: str, files: dict[str, str] | None = None) -> Path:
    for rel, content in (files or {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content, encoding="utf-8")
    path = tmp_path / "agents" / "agent.yaml" if files and any(k.startswith("agents/") for k in files) \
        else tmp_path / "agent.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEAD + tool_tail, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    return [p.format().removeprefix(f"{path}:") for p in check_agent(path)[1]]


def starts(found: list[str], prefix: str) -> bool:
    return any(p.startswith(prefix) for p in found)


def test_an_http_tool_loads_as_a_frozen_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_TOKEN", "value-never-stored")
    path = write(tmp_path, """\
    http:
      method: PUT
      url: https://api.example.com/orders/{order_id}?shop={vars.shop}
      headers: {Authorization: "Bearer ${env:SHOP_TOKEN}"}
      body: {state: "{order_id}"}
      retries: 2
      result: {template: "{{ json.state }}"}
    timeout_s: 4
""")
    agent = load_agent(path)
    (tool,) = agent.tools
    assert tool.handler == "http:PUT https://api.example.com/orders/{order_id}?shop={vars.shop}"
    assert tool.timeout_s == 4
    assert isinstance(tool.http, HttpToolSpec)
    assert tool.http.body == '{"state": "{order_id}"}' and tool.http.retries == 2
    assert tool.http.result_template == "{{ json.state }}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        tool.http.url = "https://elsewhere.example/"  # type: ignore[misc]
    assert callable(tool.function)
    # The loaded agent holds references, never a resolved secret.
    assert "value-never-stored" not in repr(agent)


def test_handler_and_http_together_is_an_error_at_http(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    handler: builtin:current_datetime
    http: {url: "https://x.example/"}
""")
    assert "14:5: error: tools[0]: use either handler or http, not both" in problems(path)


def test_neither_handler_nor_http_is_an_error_at_the_tool(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    found = problems(path)
    assert starts(found, "8:5: error: tools[0]: missing what answers the tool: handler"), found


def test_a_misspelt_http_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    htp: {url: "https://x.example/"}
""")
    found = problems(path)
    assert found == ["13:5: error: unknown key 'htp' in tools[0]; did you mean 'http'?"], found


def test_unknown_keys_inside_http(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    http: {url: "https://x.example/", retry: 2}
""")
    assert any("unknown key 'retry' in tools[0].http; did you mean 'retries'?" in p for p in problems(path))


def test_problems_point_at_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    http:
      url: http://api.example.com/orders/{id}
      headers:
        X-Key: "${env:NOT_SET_ANYWHERE_123}"
      result: {pointer: order}
""")
    found = problems(path)
    assert starts(found, "14:7: error: tools[0].http.url: plain http:// to api.example.com")
    assert starts(found, "14:7: error: tools[0].http.url: {id} is not an argument")
    assert "16:9: warning: tools[0].http.headers.X-Key: environment variable NOT_SET_ANYWHERE_123 is not " \
           "set: a run of this agent refuses to start without it" in found
    assert starts(found, "17:16: error: tools[0].http.result.pointer: 'order' does not match")


def test_a_missing_variable_alone_is_only_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    http: {url: "https://x.example/?k=${env:NOT_SET_ANYWHERE_123}"}
""")
    agent, found = check_agent(path)
    assert agent is not None
    assert [p.severity for p in found] == ["warning"]


def test_ca_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    http: {url: "https://x.example/", ca_file: ../ca.pem}
""", files={"ca.pem": "x", "agents/.keep": ""})
    found = problems(path)
    assert starts(found, "13:39: error: ca_file '../ca.pem' resolves to"), found
    assert "outside the agent's folder" in found[0]


def test_ca_file_inside_the_folder(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    http: {url: "https://x.example/", ca_file: certs/ca.pem}
""", files={"certs/ca.pem": "x"})
    (tool,) = load_agent(path).tools
    assert tool.http is not None and tool.http.ca_file == (tmp_path / "certs" / "ca.pem").resolve()


def test_load_agent_lists_http_errors(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    http: {url: "https://{order_id}.example/"}
""")
    with pytest.raises(ConfigError, match=r"scheme or host"):
        load_agent(path)


def test_an_attempt_timeout_over_the_tools_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, """\
    timeout_s: 5
    http: {url: "https://x.example/", timeout_s: 8}
""")
    agent, found = check_agent(path)
    assert agent is not None
    assert [p.format().removeprefix(f"{path}:") for p in found] == [
        "14:39: warning: tools[0].http.timeout_s (8 s) is longer than the tool's timeout_s (5 s), which ends "
        "the call first"]
