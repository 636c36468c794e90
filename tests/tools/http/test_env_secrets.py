"""runner.config.secrets: `${env:NAME}` references found, resolved, checked and redacted."""

from __future__ import annotations

import pytest

from runner.config.secrets import (
    EnvUse,
    MissingEnvError,
    env_refs,
    malformed_env_refs,
    missing_env,
    redact,
    resolve_env_refs,
    unset_refusal,
)


def test_env_refs_in_order_without_repeats() -> None:
    assert env_refs("Bearer ${env:TOKEN} ${env:_B2} ${env:TOKEN}") == ["TOKEN", "_B2"]
    assert env_refs("no references, ${HOME}, $env:X, {env:Y}") == []


def test_resolve_replaces_every_reference() -> None:
    environ = {"TOKEN": "abc", "EMPTY": ""}
    assert resolve_env_refs("Bearer ${env:TOKEN}/${env:TOKEN}${env:EMPTY}", environ) == "Bearer abc/abc"
    assert resolve_env_refs("plain $text {env:TOKEN}", environ) == "plain $text {env:TOKEN}"


def test_a_value_is_not_itself_resolved() -> None:
    # A secret that happens to look like a reference is sent as it is, not expanded again.
    assert resolve_env_refs("${env:A}", {"A": "${env:B}", "B": "x"}) == "${env:B}"


def test_missing_variable_is_named_never_valued() -> None:
    with pytest.raises(MissingEnvError) as info:
        resolve_env_refs("${env:SET} ${env:UNSET}", {"SET": "hunter2"})
    assert info.value.name == "UNSET"
    assert str(info.value) == "environment variable UNSET is not set"
    assert "hunter2" not in str(info.value)
    assert missing_env("${env:SET} ${env:UNSET} ${env:OTHER}", {"SET": "x"}) == ["UNSET", "OTHER"]


@pytest.mark.parametrize("text", ["${env:}", "${env:1X}", "${ENV:X}", "${env:X", "${ env:X}", "${env:A-B}"])
def test_malformed_references_are_found(text: str) -> None:
    assert malformed_env_refs(f"Bearer {text}") != []
    assert env_refs(text) == []


def test_well_formed_references_are_not_malformed() -> None:
    assert malformed_env_refs("${env:A} and ${env:_b9} and $5 and ${other}") == []


def test_redact_puts_references_back() -> None:
    resolved = {"SHORT": "abc", "LONG": "abcdef", "EMPTY": ""}
    assert redact("key=abcdef&x=abc", resolved) == "key=${env:LONG}&x=${env:SHORT}"
    assert redact("nothing secret", resolved) == "nothing secret"


def test_unset_refusal_names_each_variable_and_place_once_in_file_order() -> None:
    uses = [EnvUse("B", "MCP server crm", "a.yaml", 20, 9), EnvUse("A", "tool t", "a.yaml", 7, 5, "t"),
            EnvUse("A", "tool t", "a.yaml", 7, 5, "t"),  # two cases of a test sharing the agent
            EnvUse("SET", "tool t", "a.yaml", 8, 5, "t"), EnvUse("EMPTY", "tool t", "a.yaml", 9, 5, "t")]
    assert unset_refusal(uses, {"SET": "hunter2", "EMPTY": ""}) == (
        "environment variable(s) not set: A, B; nothing was started\n"
        "  a.yaml:7:5: A, used by tool t\n"
        "  a.yaml:20:9: B, used by MCP server crm\n"
        "Set them before starting (export NAME=...); `agent-run check` lists them")
    assert unset_refusal(uses, {"A": "x", "B": "y", "SET": "z", "EMPTY": ""}) is None
    assert unset_refusal([], {}) is None
