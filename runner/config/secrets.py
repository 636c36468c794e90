"""`${env:NAME}` references: how an agent file names a secret without holding it.

An agent file is shared, committed and printed; an API key must not be in it. A value such as
`Bearer ${env:ORDERS_TOKEN}` names the environment variable instead, and is resolved only at the
moment of use (an HTTP tool's request, an MCP server's start), from the environment of the run.
Resolved text never goes back into config objects, logs, transcripts or messages: errors name the
variable, and `redact` turns any resolved value found in outgoing text back into its reference.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class EnvUse:
    """One `${env:NAME}` reference in an agent file: the variable, what needs it and where it is
    written. The loader records every reference (set or not), so the refusal can be made later,
    at the moment a command is about to start, against the environment of that moment."""

    name: str
    user: str  # what needs it, as shown: "tool lookup_order", "MCP server crm"
    file: str  # the agent file as the user named it
    line: int
    col: int
    tool: str | None = None  # the tool's name, when the reference is an HTTP tool's (a test can mock it)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


def unset_refusal(uses: Iterable[EnvUse], environ: Mapping[str, str] | None = None) -> str | None:
    """Why a command must not start, or None: the variables `uses` reference that are not set.

    The one wording of `agent-run run`, `serve` and `test` (HTTP tools, MCP servers): each unset
    variable by name, then each place that references it as FILE:LINE:COL, never a value.
    """
    environ = os.environ if environ is None else environ
    # Each place once, in file order (several cases of a test can share an agent's uses).
    unset = sorted((use for use in set(uses) if use.name not in environ),
                   key=lambda use: (use.file, use.line, use.col, use.name))
    if not unset:
        return None
    names = ", ".join(dict.fromkeys(use.name for use in unset))
    places = "".join(f"\n  {use.where}: {use.name}, used by {use.user}" for use in unset)
    return (f"environment variable(s) not set: {names}; nothing was started{places}\n"
            f"Set them before starting (export NAME=...); `agent-run check` lists them")
