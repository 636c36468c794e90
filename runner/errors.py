"""The runner's exceptions.

RunnerError                    root; the CLI prints its message and exits 1, never a traceback
├── ConfigError                an agent or scenario file is wrong (carries located problems)
├── ProtocolError
│   ├── LocalProtocolError     we tried to send something Nova Sonic forbids (a bug in the runner)
│   └── RemoteProtocolError    the stream delivered something malformed
├── TransportError             the stream failed; `retryable` says whether reconnecting may help
│   └── CredentialsError       no usable AWS credentials (raised before any stream opens)
├── AudioDeviceError           a device or audio file could not be used
└── ToolError                  a tool handler failed (reported to the model as a JSON error)
"""

from __future__ import annotations


class RunnerError(Exception):
    """Base of every error the runner raises on purpose."""


class ConfigError(RunnerError):
    """An agent or scenario file is invalid. `problems` holds every located problem."""

    def __init__(self, message: str, problems: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class ProtocolError(RunnerError):
    """Base for protocol violations, ours or the peer's."""


class LocalProtocolError(ProtocolError):
    """We tried to send an event that is illegal in the current session state."""


class RemoteProtocolError(ProtocolError):
    """The stream delivered bytes or an event that cannot be decoded."""


class TransportError(RunnerError):
    """The bidirectional stream failed.

    `kind` is the service's exception name (e.g. "ModelTimeoutException") or a short
    local description; `retryable` says whether a new stream may succeed.
    """

    def __init__(self, message: str, *, kind: str = "TransportError", retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


class CredentialsError(TransportError):
    """No AWS credentials could be resolved."""


class AudioDeviceError(RunnerError):
    """An audio device or file could not be opened or used."""


class ToolError(RunnerError):
    """A tool call failed; its message is sent to the model as a JSON error result."""
