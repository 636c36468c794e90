"""Fixtures of the compatibility tests: the third-party clients' venvs, built once per machine."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import venvs

SKIP_ENV = "AGENT_RUN_SKIP_COMPAT"
_BUILT: dict[str, str] = {}


@pytest.fixture(scope="session")
def compat_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, venvs.Venv]:
    """Every client venv (pipecat, strands), built side by side when missing. A failed build fails
    the tests that need it, with pip's output; set AGENT_RUN_SKIP_COMPAT=1 to skip them instead
    on a machine that cannot reach PyPI."""
    if os.environ.get(SKIP_ENV):
        pytest.skip(f"{SKIP_ENV} is set: third-party client tests skipped")
    logs = tmp_path_factory.mktemp("compat-venvs")
    with ThreadPoolExecutor(max_workers=len(venvs.REQUIREMENTS)) as pool:
        futures = {name: pool.submit(venvs.ensure, name, log=logs / f"{name}.log")
                   for name in venvs.REQUIREMENTS}
    built: dict[str, venvs.Venv] = {}
    for name, future in futures.items():
        try:
            built[name] = future.result()
        except venvs.VenvError as exc:
            pytest.fail(f"cannot build the {name} client's venv (set {SKIP_ENV}=1 to skip):\n{exc}")
        venv = built[name]
        _BUILT[name] = "reused" if venv.build_seconds is None else f"built in {venv.build_seconds:.0f} s"
    return built


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _BUILT:
        details = ", ".join(f"{name} {how}" for name, how in _BUILT.items())
        terminalreporter.write_line(f"compat venvs ({Path(venvs.ROOT).name}): {details}")
