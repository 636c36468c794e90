"""`agent-run check`: not implemented yet (placeholder so the CLI wires up; owned by its issue)."""

from __future__ import annotations

import argparse
from typing import Any

from runner.errors import RunnerError


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("check", help="(not implemented yet)")
    p.add_argument("rest", nargs="*")


def run(args: argparse.Namespace) -> int:
    raise RunnerError("'agent-run check' is not implemented yet")
