"""Issue 8: Jinja with a time and size budget, as `agent-run check` meets it (real CLI).

Before the budget, the nested loop ran for hours, `'a' * 10**9` took a gigabyte, and a huge
`range` in an event template crashed `check` with a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAD = "version: 1\nname: t\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: matthew\n"
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
TIMEOUT_S = 30  # generous: the command takes about 1.5 s (three 0.5 s budgets plus start-up)


def test_prompt_greeting_and_event_templates_that_blow_the_budget_are_located_errors(tmp_path: Path) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text(HEAD + f"system_prompt: |\n  Hello.\n  {NESTED}\n"
                            "greeting: \"{{ 'a' * 10**9 }}\"\ntemplates: tpl\n")
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "promptEnd.json.j2").write_text(
        '{"event": {"promptEnd": {"promptName": {{ prompt_name | tojson }}}}}\n'
        "{% for i in range(10**10) %}{% endfor %}\n")
    (tmp_path / "tpl" / "sessionEnd.json.j2").write_text('{"event": {"sessionEnd": {}}}' + NESTED + "\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "runner", "check", str(agent)], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 1
    slow = "rendering took longer than 0.5 s (a loop too large, or recursion?)"
    assert result.stdout.splitlines() == [
        f"{agent}:7:3: error: system_prompt: {slow}; templates must render in well under a second",
        f"{agent}:8:1: error: greeting: repeating a text or list would make 1000000000 characters or "
        f"items, more than the 4194304 a template may build",
        f"{tmp_path}/tpl/promptEnd.json.j2:2:1: error: template error: OverflowError: Range too big. "
        f"The sandbox blocks ranges larger than MAX_RANGE (100000).",
        f"{tmp_path}/tpl/sessionEnd.json.j2:1:1: error: template error: {slow}; templates must render "
        f"in well under a second",
        "1 file checked: 4 errors, 0 warnings",
    ]
    assert elapsed < 15, elapsed
