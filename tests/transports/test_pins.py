"""runner/transports/pins.py: the version checks the fast paths stand aside on."""

from __future__ import annotations

import importlib.metadata

from runner.transports.pins import installed, pin_problem


def test_installed_versions_are_the_metadatas() -> None:
    assert installed("awscrt") == importlib.metadata.version("awscrt")
    assert installed("no-such-distribution-here") is None


def test_a_pin_problem_names_the_distribution_and_both_versions() -> None:
    real = importlib.metadata.version("smithy-core")
    assert pin_problem({"smithy-core": real}) is None
    assert pin_problem({"smithy-core": real, "awscrt": "0.0.1"}) == (
        f"awscrt is {installed('awscrt')}, the fast path knows 0.0.1")
    assert pin_problem({"no-such-distribution-here": "1.0"}) == (
        "no-such-distribution-here is not installed, the fast path knows 1.0")
