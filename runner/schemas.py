"""Finds the JSON Schemas that define the project's file formats.

The canonical files live in the repository's top-level `schemas/`; the wheel carries a copy at
`runner/_schemas/` (hatch force-include). A source checkout (editable install, tests) has no copy
inside the package, so fall back to the repository folder.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

AGENT = "agent.schema.json"
SCENARIO = "scenario.schema.json"
AGENT_TEST = "agent-test.schema.json"
INPUT_EVENT = "nova-sonic-input-event.schema.json"


def schema_dir() -> Path:
    """The folder holding the schemas for this installation."""
    packaged = Path(str(resources.files("runner"))) / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `name` (one of the constants above)."""
    data: dict[str, Any] = json.loads((schema_dir() / name).read_text(encoding="utf-8"))
    return data
