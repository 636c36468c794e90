"""`agent-run check` on call-control settings: errors and warnings at FILE:LINE:COL, no secrets shown,
and the typed config the loader builds from them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config.loader import check_agent
from runner.config.model import DEFAULT_CLOSING_LINE, InactivityConfig, TransferSpec

REPO = Path(__file__).resolve().parents[2]
HEAD = """\
version: 1
name: calls
model: {id: MODEL, region: us-east-1}
voice: matthew
system_prompt: You are a helpful assistant.
vars: {who: caller}
"""


def write(tmp_path: Path, body: str, model: str = "amazon.nova-2-sonic-v1:0") -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(HEAD.replace("MODEL", model) + body, encoding="utf-8")
    return path


def check(tmp_path: Path, body: str, model: str = "amazon.nova-2-sonic-v1:0",
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = write(tmp_path, body, model)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TWILIO_"))}
    environ["PYTHONPATH"] = str(REPO)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "runner", "check", str(path)], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_call_control_settings_become_typed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SID", "AC123")
    monkeypatch.setenv("MY_TOKEN", "secret")
    config, problems = check_agent(write(tmp_path, """\
session:
  inactivity: {nudge_after_s: 8, end_after_s: 4.5, nudge: "Check on {{ who }}"}
  max_duration_s: 600
tools:
  - name: end_call
    description: End the call.
    input_schema: {type: object, properties: {}}
    handler: builtin:end_call
  - name: transfer_call
    description: Transfer the call.
    input_schema: {type: object, properties: {to: {type: string}}, required: [to]}
    handler: builtin:transfer
    transfer:
      allow: ["+1 (555) 123-4567", "sip:desk@example.com"]
      account_sid: ${env:MY_SID}
      auth_token: ${env:MY_TOKEN}
"""))
    assert problems == [] and config is not None
    assert config.session.inactivity == InactivityConfig(8.0, 4.5, nudge="Check on caller",
                                                         goodbye=InactivityConfig(1, 1).goodbye)
    assert config.session.max_duration_s == 600.0
    assert config.session.closing_line == DEFAULT_CLOSING_LINE
    transfer = config.tools[1]
    assert transfer.transfer == TransferSpec(allow=("+1 (555) 123-4567", "sip:desk@example.com"),
                                             account_sid="${env:MY_SID}", auth_token="${env:MY_TOKEN}")
    assert transfer.function.__name__ == "transfer"


def test_schema_mistakes_are_located(tmp_path: Path) -> None:
    done = check(tmp_path, """\
session:
  inactivity: {nudge_after_s: 0, nudge: hi}
  max_duration_s: forever
  closing_lines: bye
""")
    assert done.returncode == 1
    out = done.stdout
    assert ":8:3: error: missing required key 'end_after_s' in session.inactivity" in out, out
    assert ":8:16: error: session.inactivity.nudge_after_s: must be at least 1, got 0" in out, out
    assert ":9:3: error: session.max_duration_s: expected a number" in out, out
    assert ":10:3: error: unknown key 'closing_lines' in session; did you mean 'closing_line'?" in out, out


def test_transfer_settings_are_checked(tmp_path: Path) -> None:
    done = check(tmp_path, """\
tools:
  - name: lookup
    description: A tool.
    input_schema: {type: object, properties: {expression: {type: string}}, required: [expression]}
    handler: builtin:calculator
    transfer: {allow: ["+15551234567"]}
  - name: transfer_call
    description: Transfer the call.
    input_schema: {type: object, properties: {to: {type: string}}, required: [to]}
    handler: builtin:transfer
    transfer:
      allow: ["+15551234567", "the front desk"]
      auth_token: hunter2
""", env={"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "x"})
    assert done.returncode == 1
    out = done.stdout
    assert ":12:5: error: tools[0].transfer: only a tool with 'handler: builtin:transfer' has transfer " \
           "settings" in out, out
    assert ":18:31: error: tools[1].transfer.allow[1]: 'the front desk': give a phone number" in out, out
    # A token written in the file is refused, and not repeated.
    assert ":19:7: error: tools[1].transfer.auth_token: must name an environment variable, " \
           "e.g. '${env:TWILIO_AUTH_TOKEN}'" in out, out
    assert "hunter2" not in out.replace("auth_token: hunter2", "")


def test_missing_credentials_are_warnings_naming_the_variable(tmp_path: Path) -> None:
    done = check(tmp_path, """\
tools:
  - name: transfer_call
    description: Transfer the call.
    input_schema: {type: object, properties: {to: {type: string}}, required: [to]}
    handler: builtin:transfer
    transfer: {auth_token: "${env:DESK_TOKEN}"}
""", env={"TWILIO_ACCOUNT_SID": "AC1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert ":12:16: warning: tools[0]: environment variable DESK_TOKEN (auth_token of builtin:transfer) " \
           "is not set" in done.stdout, done.stdout
    assert "TWILIO_ACCOUNT_SID" not in done.stdout


def test_a_model_without_text_input_gets_warnings(tmp_path: Path) -> None:
    done = check(tmp_path, """\
session:
  inactivity: {nudge_after_s: 5, end_after_s: 5}
  max_duration_s: 60
""", model="amazon.nova-sonic-v1:0")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert ":8:3: warning: amazon.nova-sonic-v1:0 takes no text input (Nova 2 only): no nudge or goodbye " \
           "can be said; the conversation just ends after 10 s of silence" in out, out
    assert ":9:3: warning: amazon.nova-sonic-v1:0 takes no text input (Nova 2 only): the closing line " \
           "cannot be said" in out, out


def test_a_closing_line_without_a_limit_is_a_warning(tmp_path: Path) -> None:
    done = check(tmp_path, "session:\n  closing_line: bye\n")
    assert done.returncode == 0
    assert ":8:3: warning: session.closing_line is only said when session.max_duration_s is set" \
        in done.stdout, done.stdout


def test_a_template_error_in_a_call_control_text_is_located(tmp_path: Path) -> None:
    done = check(tmp_path, "session:\n  max_duration_s: 60\n  closing_line: 'Bye {{ nobody }}'\n")
    assert done.returncode == 1
    assert ":9:3: error: session.closing_line:" in done.stdout and "nobody" in done.stdout, done.stdout


def test_list_builtins_shows_the_call_control_tools() -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "check", "--list-builtins"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0
    assert "builtin:end_call(reason: str = '')" in done.stdout, done.stdout
    assert "builtin:transfer(to: str)" in done.stdout, done.stdout
