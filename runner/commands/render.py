"""`agent-run render AGENT`: print the events that open a session for AGENT, one JSON per line.

These are the very bytes the runner would send (the protocol core's Session renders them), with
deterministic ids so the output can be diffed and kept in tests. No network.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from typing import Any

from runner.config.loader import load_agent
from runner.config.overrides import add_var_option, var_overrides
from runner.config.setup import session_setup
from runner.protocol.session import Session


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "render", help="print the events that open a session (no network)",
        description="Print, one compact JSON object per line, the input events that open a session "
                    "for AGENT: sessionStart, promptStart (with the tools), the system prompt block "
                    "and the audio contentStart. Ids are deterministic (id-1, id-2, ...).")
    p.add_argument("agent", metavar="AGENT", help="agent YAML file")
    add_var_option(p)


def counter_ids(prefix: str = "id") -> Callable[[], str]:
    """`id-1`, `id-2`, ...: reproducible prompt and content names."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers)}"


def opening_events(agent_path: str, overrides: dict[str, str]) -> list[bytes]:
    """The payloads (UTF-8 JSON) a session for the agent sends first."""
    agent = load_agent(agent_path, overrides)
    session = Session(session_setup(agent), agent.templates, new_id=counter_ids())
    session.start()
    return session.data_to_send()


def run(args: argparse.Namespace) -> int:
    for payload in opening_events(args.agent, var_overrides(args)):
        sys.stdout.write(payload.decode("utf-8") + "\n")
    return 0
