"""Every file in tests/data/agents/invalid/ must produce the problems its `.expected` lists.

An `.expected` line is `LINE:COL: severity: message-start` for the agent file itself, or
`RELATIVE/FILE:LINE:COL: ...` for a problem in another file (a template override). Each must be
the start of one reported problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.loader import check_agent

INVALID = Path(__file__).resolve().parent.parent / "data" / "agents" / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))


def expected_lines(agent: Path) -> list[str]:
    lines = agent.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    return [f"{agent.name}:{line}" if line[:1].isdigit() else line for line in lines if line.strip()]


def reported(agent: Path) -> list[str]:
    config, problems = check_agent(agent)
    assert config is None
    prefix = f"{INVALID}/"
    return [p.format().removeprefix(prefix) for p in problems]


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 11
    for case in CASES:
        assert case.with_suffix(".expected").is_file(), f"{case.name} has no .expected file"


@pytest.mark.parametrize("agent", CASES, ids=[c.stem for c in CASES])
def test_invalid_agent_reports_expected_problems(agent: Path) -> None:
    lines = reported(agent)
    for want in expected_lines(agent):
        assert any(line.startswith(want) for line in lines), f"missing {want!r} in:\n" + "\n".join(lines)
