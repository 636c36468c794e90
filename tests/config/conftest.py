from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

MINIMAL = """\
version: 1
name: t
model:
  id: amazon.nova-2-sonic-v1:0
voice: matthew
system_prompt: Hello.
"""


@pytest.fixture
def write_agent(tmp_path: Path) -> Callable[..., Path]:
    """Write an agent file (and optional sibling files) into a fresh folder; return its path."""

    def write(text: str = MINIMAL, name: str = "agent.yaml", files: dict[str, str] | None = None) -> Path:
        for rel, content in (files or {}).items():
            target = tmp_path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
