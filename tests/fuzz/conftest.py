"""Hypothesis profiles for tests/fuzz only (other tests keep their own settings).

Profiles are applied per test through `FUZZ` (a `settings` object used as a decorator), never
with `settings.load_profile`, which would change every other test's settings in the same run.

* `ci` (the default): few examples, derandomized (the same examples on every run, so a CI failure
  reproduces locally), no example database, no timing deadline (budgets are enforced by the
  invariant checker instead, with generous margins). All of tests/fuzz stays near a minute.
* `long`: `bash scripts/dev fuzz [N]` sets AGENT_RUN_FUZZ_PROFILE=long and AGENT_RUN_FUZZ_EXAMPLES=N;
  random examples, failures saved in .hypothesis/ so the next run replays them first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE = os.environ.get("AGENT_RUN_FUZZ_PROFILE", "ci")
LONG_EXAMPLES = int(os.environ.get("AGENT_RUN_FUZZ_EXAMPLES", "2000"))

_COMMON = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
}

settings.register_profile(
    "agent-run-fuzz-ci", max_examples=25, derandomize=True, database=None, print_blob=True, **_COMMON
)
settings.register_profile(
    "agent-run-fuzz-long",
    max_examples=LONG_EXAMPLES,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(".hypothesis/fuzz"),
    print_blob=True,
    **_COMMON,
)

if PROFILE not in ("ci", "long"):
    raise ValueError(f"AGENT_RUN_FUZZ_PROFILE must be ci or long, not {PROFILE!r}")

_BASE = settings.get_profile(f"agent-run-fuzz-{PROFILE}")


def fuzz_settings(ci_examples: int) -> settings:
    """Settings for one fuzz test: `ci_examples` examples in CI, the long run's count otherwise
    (scaled down for the slow targets: a CLI subprocess or a TLS connection per example)."""
    if PROFILE == "ci":
        return settings(_BASE, max_examples=ci_examples)
    return settings(_BASE, max_examples=max(ci_examples, LONG_EXAMPLES * ci_examples // 25))


_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this folder's tests `fuzz` (the hook sees every collected item: only ours are marked)."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.fuzz)
