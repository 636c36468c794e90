"""`${env:NAME}` references: how an agent file names a secret without holding it.

An agent file is shared, committed and printed; an API key must not be in it. A value such as
`Bearer ${env:ORDERS_TOKEN}` names the environment variable instead, and is resolved only at the
moment of use (an HTTP tool's request, an MCP server's start), from the environment of the run.
Resolved text never goes back into config objects, logs, transcripts or messages: errors name the
variable, and `redact` turns any resolved value found in outgoing text back into its reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from runner.errors import RunnerError

# NAME as POSIX shells accept it: a letter or '_', then letters, digits and '_'.
ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
# Anything that starts like a reference: `${env:`, `${ env:`, `${ENV:` ... (to catch typos).
_REF_START = re.compile(r"\$\{\s*env\s*:", re.IGNORECASE)


class MissingEnvError(RunnerError):
    """A referenced environment variable is not set. The message names it, never a value."""

    def __init__(self, name: str) -> None:
        super().__init__(f"environment variable {name} is not set")
        self.name = name


def env_refs(text: str) -> list[str]:
    """The variable names `text` references with `${env:NAME}`, each once, in order."""
    return list(dict.fromkeys(m.group(1) for m in ENV_REF.finditer(text)))


def malformed_env_refs(text: str) -> list[str]:
    """Each piece of `text` that starts like a reference but is not a valid `${env:NAME}`
    (`${env:}`, `${env:1X}`, `${ENV:X}`, an unclosed `${env:X`), so `check` can point at typos
    instead of sending them literally."""
    bad = []
    for start in _REF_START.finditer(text):
        match = ENV_REF.match(text, start.start())
        if match is None:
            end = text.find("}", start.start())
            bad.append(text[start.start(): end + 1 if end != -1 else len(text)][:60])
    return bad


def missing_env(text: str, environ: Mapping[str, str]) -> list[str]:
    """The referenced variables that are not set in `environ`."""
    return [name for name in env_refs(text) if name not in environ]


def resolve_env_refs(text: str, environ: Mapping[str, str]) -> str:
    """`text` with every `${env:NAME}` replaced by the variable's value.

    Raises MissingEnvError (naming the first unset variable) when one is not set. An empty value is
    a value: the variable is set.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise MissingEnvError(name)
        return environ[name]

    return ENV_REF.sub(value, text)


def redact(text: str, resolved: Mapping[str, str]) -> str:
    """`text` with each secret value in `resolved` (NAME -> value) replaced by `${env:NAME}`.

    Longest values first, so a value containing another is replaced whole. Empty values are
    skipped (they would match everywhere and reveal nothing).
    """
    for name, secret in sorted(resolved.items(), key=lambda item: -len(item[1])):
        if secret:
            text = text.replace(secret, f"${{env:{name}}}")
    return text


def unset_refusal(where: str, missing: Mapping[str, list[str]]) -> str | None:
    """Why a run must not start: `missing` maps each unset variable to what uses it (None if empty).

    One wording for every part that takes `${env:NAME}` (HTTP tools, MCP servers), as `check` warns.
    """
    if not missing:
        return None
    listing = "; ".join(f"{name} (used by {', '.join(users)})" for name, users in missing.items())
    return (f"{where}: environment variable(s) not set: {listing}. Set them before starting "
            f"(export NAME=...); `agent-run check` lists them")
