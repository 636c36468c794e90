"""The emulator as one async context manager: wire server + scripted Nova behaviour.

Used by `agent-run emulate` (standalone) and by `agent-run AGENT --emulate` and the tests
(in-process: same event loop, same SDK code path as real Bedrock).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner.emulator.api import StreamHandler
from runner.emulator.nova import NovaConfig, NovaHandler
from runner.emulator.replay import ReplayHandler, Tolerance, load_tape
from runner.emulator.scenario import load_scenario
from runner.emulator.server import Emulator


@dataclass(frozen=True, slots=True)
class LocalEmulator:
    """A running emulator: its server (endpoint, CA, credentials) and its behaviour's records."""

    server: Emulator
    handler: NovaHandler
    # With `replay=DIR`: what serves the streams instead of `handler` (its `differences`).
    replay: ReplayHandler | None = None

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def env(self) -> dict[str, str]:
        return self.server.env()

    def export_lines(self) -> list[str]:
        return self.server.export_lines()


@contextlib.asynccontextmanager
async def local_emulator(scenario: Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                         region: str = "us-east-1", time_limit_s: float | None = None,
                         input_timeout_s: float | None = None,
                         record_audio: bool = False, hostnames: Sequence[str] = (),
                         state_dir: Path | None = None,
                         any_credentials: bool = False, replay: Path | None = None,
                         report: Callable[[str], None] | None = None,
                         replay_ignore: Sequence[str] = ()) -> AsyncIterator[LocalEmulator]:
    """Start an emulator playing `scenario` (or the built-in default behaviour), or with `replay`
    the model's side of a recording (`agent-run AGENT --record DIR`; the first difference from it
    is given to `report` and fails the stream; event paths matching a `replay_ignore` glob are not
    compared). `hostnames`, `state_dir` and `any_credentials` are
    the server's (see `Emulator`)."""
    settings: dict[str, Any] = {"record_audio": record_audio}
    if scenario is not None:
        settings["scenario"] = load_scenario(scenario)
    if time_limit_s is not None:
        settings["time_limit_s"] = time_limit_s
    if input_timeout_s is not None:
        settings["input_timeout_s"] = input_timeout_s
    handler = NovaHandler(NovaConfig(**settings))
    replayer = None
    if replay is not None:
        tolerance = Tolerance(ignore=tuple(replay_ignore))
        if input_timeout_s is not None:
            tolerance = replace(tolerance, input_timeout_s=input_timeout_s)
        replayer = ReplayHandler(load_tape(replay), report=report, tolerance=tolerance)
    serving: StreamHandler = replayer if replayer is not None else handler
    async with Emulator(serving, host=host, port=port, region=region, hostnames=hostnames,
                        state_dir=state_dir, any_credentials=any_credentials) as server:
        yield LocalEmulator(server, handler, replayer)
