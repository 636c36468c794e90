"""Local servers a test file starts for its cases (`services:` in a `*.test.yaml`): each a command run
in the test file's folder with `{port}` replaced by a free loopback port, waited for until it accepts
TCP connections (or answers an HTTP GET), started once before the file's cases and stopped after them
(terminate, then kill; both bounded), also on Ctrl-C. A test file's `vars` reach them as
`{services.NAME.port}` and `{services.NAME.url}`.

Synchronous on purpose: services start before the cases' event loop and stop after it, the same way
for `agent-run test` and the pytest plugin.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from runner.testing.model import TestFile, Where

if TYPE_CHECKING:
    from runner.config.model import AgentConfig

HOST = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0  # after SIGTERM, before SIGKILL
OUTPUT_TAIL_LINES = 10
# What `vars` are checked with before any service runs (`agent-run check`, loading): a valid port.
CHECK_PORT = 65535
# {services.NAME.port} or {services.NAME.url} in a `vars` value.
REFERENCE = re.compile(r"\{services\.([A-Za-z_][A-Za-z0-9_-]*)\.(port|url)\}")

Readiness = Literal["tcp", "http"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    where: Where
    command: tuple[str, ...]  # as written: `python` and `{port}` are replaced when it starts
    folder: Path  # the test file's folder: where the command runs
    ready: Readiness = "tcp"
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class RunningService:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class ServiceError(Exception):
    """A service could not be started or never became ready: the message says which and why."""


def bind_vars(values: Mapping[str, str], ports: Mapping[str, int]) -> dict[str, str]:
    """`values` with every {services.NAME.port|url} replaced (names were checked by the loader)."""
    def one(match: re.Match[str]) -> str:
        service = RunningService(match.group(1), ports[match.group(1)])
        return str(service.port) if match.group(2) == "port" else service.url
    return {key: REFERENCE.sub(one, value) for key, value in values.items()}


@contextmanager
def running_services(specs: Sequence[ServiceSpec]) -> Iterator[dict[str, RunningService]]:
    """Start every service (in order) and wait until each is ready; stop them all on the way out."""
    with ExitStack() as stack:
        running: dict[str, RunningService] = {}
        for spec in specs:
            running[spec.name] = stack.enter_context(_running(spec))
        yield running


@contextmanager
def _running(spec: ServiceSpec) -> Iterator[RunningService]:
    port = _free_port()
    argv = [sys.executable if spec.command[0] == "python" else spec.command[0],
            *(arg.replace("{port}", str(port)) for arg in spec.command[1:])]
    # Output goes to a file: a pipe nobody reads would block a chatty server once it is full.
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(argv, cwd=spec.folder, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT,
                                       # its own process group: Ctrl-C is ours to pass on, and
                                       # stopping it stops whatever it started too
                                       start_new_session=True)
        except OSError as exc:
            raise ServiceError(f"{spec.where}: service {spec.name!r} cannot start "
                               f"{spec.command[0]!r}: {exc.strerror or exc}") from None
        try:
            _wait_ready(spec, process, port, output)
            yield RunningService(spec.name, port)
        finally:
            _stop(process)


def _free_port() -> int:
    # The OS picks a port nobody uses; the service binds it a moment later (a race other processes
    # could only win by binding that exact port in between).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(spec: ServiceSpec, process: subprocess.Popen[bytes], port: int, output: IO[bytes]) -> None:
    deadline = time.monotonic() + spec.startup_timeout_s
    while True:
        code = process.poll()
        if code is not None:
            raise ServiceError(f"{spec.where}: service {spec.name!r} exited with code {code} before it "
                               f"was ready{_tail(output)}")
        if _ready(spec.ready, port):
            return
        if time.monotonic() >= deadline:
            what = "accept TCP connections" if spec.ready == "tcp" else "answer an HTTP GET /"
            raise ServiceError(f"{spec.where}: service {spec.name!r} did not {what} on {HOST}:{port} "
                               f"within {spec.startup_timeout_s:g} s (startup_timeout_s){_tail(output)}")
        time.sleep(0.05)


def _ready(kind: Readiness, port: int) -> bool:
    if kind == "tcp":
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
        except OSError:
            return False
        return True
    connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        connection.request("GET", "/")
        connection.getresponse().read(65536)  # any status: the server answers HTTP
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True


def _tail(output: IO[bytes]) -> str:
    output.flush()
    output.seek(0, os.SEEK_END)
    size = output.tell()
    output.seek(max(0, size - 4096))
    lines = output.read().decode("utf-8", "replace").splitlines()[-OUTPUT_TAIL_LINES:]
    if not any(line.strip() for line in lines):
        return " (it wrote nothing)"
    return "; its output ended with:\n" + "\n".join(f"    {line}" for line in lines)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its process group, then SIGKILL; each wait bounded."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):  # the group is gone: only the zombie is left to reap
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; whatever it started in its group goes with it.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


@contextmanager
def serving(tests: TestFile, agent: AgentConfig) -> Iterator[AgentConfig]:
    """The test file's services running, and its agent with `vars` bound to their ports (`agent`
    itself when the file has no services); they stop on the way out."""
    if not tests.services:
        yield agent
        return
    from runner.config.loader import check_agent

    with running_services(tests.services) as running:
        values = bind_vars(tests.vars, {name: service.port for name, service in running.items()})
        bound, problems = check_agent(tests.agent_path, values)
        if bound is None:  # checked with CHECK_PORT already: only a port could make a difference
            listing = "\n".join(p.format() for p in problems if p.is_error)
            raise ServiceError(f"{tests.path}: the agent has errors with the services' ports:\n{listing}")
        yield bound
