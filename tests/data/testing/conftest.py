"""The test files here fail on purpose (tests/testing runs them and checks what a user sees): pytest
collects them only when one is named on its command line, never while walking `tests/`."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not collection_path.name.endswith(".test.yaml"):
        return None
    named = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    return collection_path.resolve() not in named
