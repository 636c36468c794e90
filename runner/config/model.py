"""An agent file as frozen, typed values: what the rest of the runner works with.

Built only by `runner.config.loader` after every check passed; nothing downstream sees YAML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.secrets import EnvUse
from runner.protocol.setup import InferenceSettings
from runner.protocol.templates import EventTemplates

VarValue = str | int | float | bool

DEFAULT_POLICY = "barge-in"
DEFAULT_TIMEOUT_S = 10.0
# A tool result larger than this (UTF-8 bytes of its JSON) is refused: the model gets an error.
DEFAULT_MAX_RESULT_BYTES = 64 * 1024
DEFAULT_ROTATE_AFTER_S = 360.0
# Call control (session.inactivity, session.max_duration_s): what is said, as interactive USER
# text on Nova 2, so the model speaks it in its own words and voice.
DEFAULT_NUDGE = "The user has been silent for a while. Check briefly whether they are still there."
DEFAULT_GOODBYE = "The user is still silent. Say a short goodbye now; the call is ending."
DEFAULT_CLOSING_LINE = "We have reached the time limit for this call. Say a short goodbye to the user now."
# An MCP server must have started and listed its tools within this many seconds (a Python server
# importing the SDK takes ~1 s on a quiet machine).
DEFAULT_MCP_STARTUP_TIMEOUT_S = 20.0
# An HTTP tool reads at most this much of a response body (runner/tools/http/).
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ModelConfig:
    id: str
    region: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class AudioConfig:
    input_sample_rate: int = 16000
    output_sample_rate: int = 24000
    chunk_ms: int = 32


@dataclass(frozen=True, slots=True)
class InactivityConfig:
    """session.inactivity: after `nudge_after_s` of user silence the `nudge` is said, after
    `end_after_s` more the `goodbye`, then the call ends (runner.conversation.control)."""

    nudge_after_s: float
    end_after_s: float
    nudge: str = DEFAULT_NUDGE
    goodbye: str = DEFAULT_GOODBYE


@dataclass(frozen=True, slots=True)
class SessionConfig:
    rotate_after_s: float = DEFAULT_ROTATE_AFTER_S
    inactivity: InactivityConfig | None = None
    # The conversation's time limit; at it the closing line is said, played, and the call ends.
    max_duration_s: float | None = None
    closing_line: str = DEFAULT_CLOSING_LINE


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """A builtin:transfer tool's `transfer:` settings: where it may send calls and the Twilio
    credentials, as `${env:NAME}` references (resolved when the tool runs, never stored)."""

    allow: tuple[str, ...] = ()  # empty: any number or SIP address
    account_sid: str = "${env:TWILIO_ACCOUNT_SID}"
    auth_token: str = "${env:TWILIO_AUTH_TOKEN}"


@dataclass(frozen=True, slots=True)
class HttpToolSpec:
    """A tool answered by one HTTP request (`http:` in the agent file; runner/tools/http/).

    Text here is the template as written (`{argument}`, `{vars.NAME}`, `${env:NAME}`): secrets are
    resolved only when a request is made, so no config value ever holds one.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()  # (name, value template), in file order
    body: str | None = None  # JSON text of the body template; None: POST/PUT/PATCH send the arguments
    timeout_s: float | None = None  # per attempt; None: the tool's timeout_s
    retries: int = 0  # idempotent methods only
    allow_http: bool = False  # plain http to a host that is not loopback
    ca_file: Path | None = None  # one more CA to trust (resolved), besides the system's
    result_pointer: str | None = None  # JSON pointer into the response's JSON
    result_template: str | None = None  # sandboxed Jinja over the response
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


@dataclass(frozen=True, slots=True)
class ToolConfig:
    name: str
    description: str
    input_schema: Mapping[str, Any]
    handler: str  # as written: "module:function" or "builtin:<name>"; "http:GET https://..." for http
    function: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    http: HttpToolSpec | None = None  # set when the tool is an HTTP request (then `function` makes it)
    transfer: TransferSpec | None = None  # `transfer:` settings of a builtin:transfer tool


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    """One `mcp_servers:` entry: a stdio server (`command`) or a streamable HTTP one (`url`).

    `env` and `headers` keep the values as written (`${env:NAME}` references unresolved): secrets
    are read from the environment only when the server starts (runner.tools.mcp), so no config
    value, error or rendering can hold them.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # (variable, value template)
    cwd: Path | None = None  # a stdio server runs in the agent's folder
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (header, value template)
    tools: tuple[str, ...] | None = None  # the allow list; None offers every tool
    timeout_s: float = DEFAULT_TIMEOUT_S  # per call
    startup_timeout_s: float = DEFAULT_MCP_STARTUP_TIMEOUT_S

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    path: Path
    name: str
    description: str
    model: ModelConfig
    inference: InferenceSettings
    endpointing_sensitivity: str | None
    voice: str
    audio: AudioConfig
    policy: str
    vars: Mapping[str, VarValue]  # defaults with --var overrides applied
    system_prompt: str  # rendered
    greeting: str | None
    tools: tuple[ToolConfig, ...]
    templates: EventTemplates
    session: SessionConfig
    mcp_servers: tuple[McpServerConfig, ...] = ()
    # Every `${env:NAME}` its HTTP tools and MCP servers reference, with where: what a command
    # checks against the environment before it starts (runner.config.secrets.unset_refusal).
    env_uses: tuple[EnvUse, ...] = ()
