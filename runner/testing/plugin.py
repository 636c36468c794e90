"""The pytest plugin: `*.test.yaml` files are collected as test items, one per case (as tavern
does for HTTP APIs), so `pytest agents/`, `-k`, `-x`, `--junitxml`, pytest-xdist's `-n` and IDEs
work. Registered as the `pytest11` entry point `runner.testing.plugin` (and by the repository's
root conftest.py, for a checkout whose installed entry points predate it).

A file with errors (or whose agent has errors) is a collection error listing them as
FILE:LINE:COL; a failed case shows its failures as `agent-run test` does, without a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from runner.config.model import AgentConfig
from runner.errors import ConfigError
from runner.testing.load import SUFFIX, LoadedTests, load_tests
from runner.testing.model import Case
from runner.testing.runner import RunSettings, env_refusal, run_outcome
from runner.testing.services import ServiceError, serving


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agent-run", "agent-run conversation tests (*.test.yaml)")
    group.addoption("--agent-target", choices=("emulator", "bedrock"), default="emulator",
                    help="run *.test.yaml cases against the emulator (default) or real Bedrock")
    group.addoption("--agent-repeat", type=int, default=1, metavar="N",
                    help="run each *.test.yaml case N times (default 1)")
    group.addoption("--agent-pass-rate", type=float, default=1.0, metavar="R",
                    help="with --agent-repeat: the share of runs that must pass (default 1)")


def pytest_configure(config: pytest.Config) -> None:
    if config.option.agent_repeat < 1 or not 0 < config.option.agent_pass_rate <= 1:
        raise pytest.UsageError("--agent-repeat must be at least 1, --agent-pass-rate above 0 and at most 1")


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIX):
        node: AgentTestFile = AgentTestFile.from_parent(parent, path=file_path)
        return node
    return None


class AgentTestFile(pytest.File):
    loaded: LoadedTests

    def collect(self) -> Iterator[pytest.Item]:
        try:
            loaded = load_tests(self.path)
        except ConfigError as exc:
            raise self.CollectError(str(exc)) from None
        self.loaded = loaded
        for case in loaded.tests.cases:
            yield AgentCase.from_parent(self, name=case.name, case=case, agent=loaded.agent)

    # Its services run from before its first case to after its last (pytest sets a file up once
    # for its items, and tears it down at the end, interrupted or not).
    _services: ExitStack | None = None
    served_agent: AgentConfig | None = None

    def setup(self) -> None:
        self._services = ExitStack()
        try:
            self.served_agent = self._services.enter_context(serving(self.loaded.tests, self.loaded.agent))
        except ServiceError as exc:
            pytest.fail(str(exc), pytrace=False)

    def teardown(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None


class AgentCaseFailed(Exception):
    """A case did not pass; the message is what `agent-run test` prints for it."""


class AgentCase(pytest.Item):
    def __init__(self, *, case: Case, agent: AgentConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.agent = agent

    def runtest(self) -> None:
        options = self.config.option
        if options.agent_target not in self.case.targets:
            pytest.skip(f"this case runs on: {', '.join(self.case.targets)} (not {options.agent_target})")
        if (refusal := env_refusal([(self.agent, self.case)])) is not None:
            pytest.fail(refusal, pytrace=False)  # as `agent-run test` refuses, before anything starts
        settings = RunSettings(target=options.agent_target, repeat=options.agent_repeat,
                               pass_rate=options.agent_pass_rate)
        agent = self.parent.served_agent if isinstance(self.parent, AgentTestFile) else None
        outcome = asyncio.run(run_outcome(agent or self.agent, self.case, settings))
        for number, attempt in enumerate(outcome.attempts, 1):
            if attempt.run.log:  # what `agent-run AGENT` would have printed: shown with a failure
                self.add_report_section("call", f"conversation (run {number})", attempt.run.log)
        if not outcome.passed:
            raise AgentCaseFailed(outcome.report())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, AgentCaseFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.where.line - 1, self.case.name
