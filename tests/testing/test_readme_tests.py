"""The README's test-file examples are valid test files (checked, and the quick start's one run)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from runner.testing.load import check_tests
from runner.testing.runner import RunSettings, run_outcome

REPO = Path(__file__).resolve().parents[2]


def examples() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^(version: 1\nagent: .*?)^(?:YAML|```)$", text, flags=re.M | re.S)
    assert len(blocks) == 2
    return blocks


def test_the_readme_examples_are_valid_and_the_quick_start_one_passes(tmp_path: Path) -> None:
    for index, block in enumerate(examples()):
        path = tmp_path / f"{index}.test.yaml"
        path.write_text(re.sub(r"^agent: (\S+)", lambda m: f"agent: {REPO / 'agents' / m.group(1)}", block,
                               flags=re.M), encoding="utf-8")
        loaded, problems = check_tests(path)
        assert problems == [] and loaded is not None
        if index == 0:
            case = loaded.tests.cases[0]
            outcome = asyncio.run(run_outcome(loaded.agent, case, RunSettings()))
            assert outcome.passed, outcome.report()
