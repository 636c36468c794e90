from __future__ import annotations

import pytest

from runner.config.templates import load_event_templates
from runner.protocol.templates import EventTemplates


@pytest.fixture(scope="session")
def templates() -> EventTemplates:
    return load_event_templates()
