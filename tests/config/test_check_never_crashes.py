"""check_agent reports problems for any mangled agent file; it never raises (no tracebacks for users)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from runner.config.loader import check_agent

AGENTS = Path(__file__).resolve().parents[2] / "agents"
JUNK = ["", "null", "[]", "{}", "- x", "1", "'a'", "{a: [1, {b: 2}]}", "true", "!!binary aGk=", "&a x",
        "*a", "2024-01-01", "[1, [2]]", "{{ x }}", "{% if %}", "|\n  x", "builtin:calculator", "-1e9"]


def mangle(rng: random.Random, lines: list[str]) -> list[str]:
    lines = list(lines)
    for _ in range(rng.randint(1, 3)):
        j = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.3:
            del lines[j]
        elif op < 0.6 and ":" in lines[j]:
            lines[j] = f"{lines[j].partition(':')[0]}: {rng.choice(JUNK)}"
        elif op < 0.8:
            lines.insert(j, lines[rng.randrange(len(lines))])
        else:
            lines[j] = lines[j][: rng.randrange(len(lines[j]) + 1)]
        if not lines:
            break
    return lines


def test_mangled_examples_give_problems_not_exceptions(tmp_path: Path) -> None:
    shutil.copy(AGENTS / "orders_tools.py", tmp_path)
    sources = [p.read_text(encoding="utf-8").splitlines() for p in sorted(AGENTS.glob("*.yaml"))]
    rng = random.Random(20250101)
    target = tmp_path / "agent.yaml"
    invalid = 0
    for _ in range(150):
        target.write_text("\n".join(mangle(rng, rng.choice(sources))), encoding="utf-8")
        config, problems = check_agent(target)
        assert (config is None) == any(p.is_error for p in problems)
        invalid += config is None
    assert invalid > 50  # the mangling does reach the error paths


def test_wrongly_typed_timeout_is_a_problem(tmp_path: Path) -> None:
    text = (AGENTS / "orders.yaml").read_text(encoding="utf-8").replace("timeout_s: 10", "timeout_s: {a: 1}")
    shutil.copy(AGENTS / "orders_tools.py", tmp_path)
    (tmp_path / "orders.yaml").write_text(text, encoding="utf-8")
    config, problems = check_agent(tmp_path / "orders.yaml")
    assert config is None
    assert [p.message for p in problems] == ["tools[1].timeout_s: expected a number, got a mapping"]
