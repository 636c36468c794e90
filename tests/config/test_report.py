from __future__ import annotations

import json

from runner.config.report import Problem, count, summary


def test_format_and_json() -> None:
    p = Problem("agents/x.yaml", 3, 5, "error", "voice 'x' is not available")
    assert p.format() == "agents/x.yaml:3:5: error: voice 'x' is not available"
    assert json.loads(json.dumps(p.to_json())) == {
        "file": "agents/x.yaml", "line": 3, "col": 5, "severity": "error",
        "message": "voice 'x' is not available"}


def test_problems_sort_by_file_then_position() -> None:
    a = Problem("a.yaml", 10, 1, "error", "m")
    b = Problem("a.yaml", 2, 7, "warning", "m")
    c = Problem("B.yaml", 1, 1, "error", "m")
    assert sorted([a, b, c]) == [c, b, a]


def test_summary_counts_and_plurals() -> None:
    problems = [Problem("f", 1, 1, "error", "x"), Problem("f", 1, 1, "error", "y"),
                Problem("f", 2, 1, "warning", "z")]
    assert count(problems) == (2, 1)
    assert summary(2, problems) == "2 files checked: 2 errors, 1 warning"
    assert summary(1, []) == "1 file checked: 0 errors, 0 warnings"
