"""Issue 8: handler modules that misbehave while being imported, as `agent-run check --json` meets them.

Before: `sys.exit()` made `check` exit silently with the module's code, `os._exit(0)` made it
"pass", an endless loop hung it, and `print` corrupted the JSON on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.tools.importer import IMPORT_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[2]
HEAD = "version: 1\nname: t\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: matthew\nsystem_prompt: Hi.\n"


def agent_with_tools(folder: Path, modules: dict[str, str]) -> Path:
    """An agent whose tool i uses handler `<module i>:f`; the handler line of tool i is 10 + 4 i."""
    lines = ["tools:"]
    for index, (name, code) in enumerate(modules.items()):
        (folder / f"{name}.py").write_text(code)
        lines += [f"  - name: tool{index}", "    description: A tool.",
                  "    input_schema: {type: object, properties: {}}", f"    handler: {name}:f"]
    path = folder / "agent.yaml"
    path.write_text(HEAD + "\n".join(lines) + "\n")
    return path


def check_json(agent: Path, timeout_s: float = 30) -> tuple[int, list[dict[str, Any]], str]:
    result = subprocess.run([sys.executable, "-m", "runner", "check", "--json", str(agent)], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout_s, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


FINE = "def f() -> str:\n    return 'ok'\n"


@pytest.mark.parametrize(("code", "message"), [
    ("import sys\nsys.exit(3)\n", "importing handler module 'bad' called sys.exit(3) ({folder}/bad.py:2)"),
    ("import sys\nsys.exit(0)\n", "importing handler module 'bad' called sys.exit(0) ({folder}/bad.py:2)"),
    ("import os\nos._exit(0)\n", "importing handler module 'bad' ended the process (exit status 0; "
                                 "os._exit() at import time?)"),
    ("raise KeyboardInterrupt\n",
     "importing handler module 'bad' raised KeyboardInterrupt ({folder}/bad.py:1)"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
     "importing handler module 'bad' ended the process (killed by signal SIGKILL)"),
], ids=["sys.exit-3", "sys.exit-0", "os._exit", "KeyboardInterrupt", "SIGKILL"])
def test_a_module_that_ends_the_process_at_import_is_an_error_at_its_handler_line(
        tmp_path: Path, code: str, message: str) -> None:
    agent = agent_with_tools(tmp_path, {"good": FINE, "bad": code})
    returncode, problems, _ = check_json(agent)
    assert returncode == 1
    assert problems == [{"file": str(agent), "line": 14, "col": 5, "severity": "error",
                         "message": "tools[1].handler: " + message.format(folder=tmp_path)}]


def test_a_module_that_never_finishes_importing_is_stopped_after_the_time_limit(tmp_path: Path) -> None:
    agent = agent_with_tools(tmp_path, {"endless": "while True:\n    pass\n", "good": FINE})
    started = time.monotonic()
    returncode, problems, _ = check_json(agent, timeout_s=IMPORT_TIMEOUT_S + 30)
    assert time.monotonic() - started < IMPORT_TIMEOUT_S + 10
    assert returncode == 1
    assert problems == [{"file": str(agent), "line": 10, "col": 5, "severity": "error", "message":
                         f"tools[0].handler: importing handler module 'endless' did not finish within "
                         f"{IMPORT_TIMEOUT_S:g} s (an endless loop or a blocking call at import time?)"}]


def test_printing_at_import_goes_to_stderr_and_leaves_the_json_intact(tmp_path: Path) -> None:
    agent = agent_with_tools(tmp_path, {"chatty": "print('hello from import')\n" + FINE})
    returncode, problems, stderr = check_json(agent)
    assert (returncode, problems) == (0, [])
    assert "hello from import" in stderr


def test_a_module_used_by_several_tools_is_probed_once(tmp_path: Path) -> None:
    counter = tmp_path / "imports.txt"
    code = f"with open({str(counter)!r}, 'a') as out:\n    out.write('import\\n')\n" + FINE
    (tmp_path / "shared.py").write_text(code)
    tools = "".join(f"  - name: tool{i}\n    description: A tool.\n    input_schema: {{type: object}}\n"
                    f"    handler: shared:f\n" for i in range(3))
    agent = tmp_path / "agent.yaml"
    agent.write_text(HEAD + "tools:\n" + tools)
    assert check_json(agent)[:2] == (0, [])
    assert counter.read_text().splitlines() == ["import", "import"]  # the probe, then in-process
