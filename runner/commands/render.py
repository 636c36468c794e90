"""`agent-run render AGENT`: print the events that open a session for AGENT, one JSON per line.

These are the very bytes the runner would send (the protocol core's Session renders them), with
deterministic ids so the output can be diffed and kept in tests. No network. The agent's
warnings (a retired model, say) go to stderr, so stdout stays JSON lines.
`agent-run render --list-templates` names every event template an agent may override.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Callable
from typing import Any

from runner.config.loader import load_agent, load_agent_and_warnings
from runner.config.model import AgentConfig
from runner.config.overrides import add_var_option, var_overrides
from runner.config.setup import session_setup
from runner.config.templates import builtin_sources
from runner.protocol.session import Session
from runner.protocol.templates import TEMPLATE_EVENTS, TEMPLATE_SUFFIX

EPILOG = f"""\
event templates: every event comes from a Jinja template; an agent's `templates:` folder may
override any of them with a file named NAME{TEMPLATE_SUFFIX}. `agent-run render --list-templates` prints
each NAME, the event it renders and the variables it gets.
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "render", help="print the events that open a session (no network)",
        description="Print, one compact JSON object per line, the input events that open a session "
                    "for AGENT: sessionStart, promptStart (with the tools), the system prompt block "
                    "and the audio contentStart. Ids are deterministic (id-1, id-2, ...). Warnings "
                    "about the agent go to stderr.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", metavar="AGENT", nargs="?", help="agent YAML file")
    p.add_argument("--list-templates", action="store_true",
                   help="list the event template names an agent may override, and exit")
    add_var_option(p)
    p.set_defaults(parser=p)


def counter_ids(prefix: str = "id") -> Callable[[], str]:
    """`id-1`, `id-2`, ...: reproducible prompt and content names."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers)}"


def session_events(agent: AgentConfig) -> list[bytes]:
    """The payloads (UTF-8 JSON) a session for the agent sends first."""
    session = Session(session_setup(agent), agent.templates, new_id=counter_ids())
    session.start()
    return session.data_to_send()


def opening_events(agent_path: str, overrides: dict[str, str]) -> list[bytes]:
    """The payloads (UTF-8 JSON) a session for the agent at `agent_path` sends first."""
    return session_events(load_agent(agent_path, overrides))


def template_listing() -> list[str]:
    """One line per overridable template: file name, the event it renders, and what it is for
    (the leading `{# ... #}` comment of the built-in template)."""
    sources = builtin_sources()
    width = max(len(name) for name in TEMPLATE_EVENTS) + len(TEMPLATE_SUFFIX)
    lines = []
    for name, event in TEMPLATE_EVENTS.items():
        comment = re.match(r"\{#\s*(.*?)\s*#\}", sources[name].text, re.DOTALL)
        about = f"  {comment.group(1)}" if comment else ""
        lines.append(f"{name + TEMPLATE_SUFFIX:<{width}}  {event:<12}{about}")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.list_templates:
        for line in template_listing():
            print(line)
        return 0
    if args.agent is None:
        args.parser.error("the following arguments are required: AGENT (or --list-templates)")
    agent, problems = load_agent_and_warnings(args.agent, var_overrides(args))
    for problem in problems:  # only warnings: an error would have raised
        print(problem.format(), file=sys.stderr)
    for payload in session_events(agent):
        sys.stdout.write(payload.decode("utf-8") + "\n")
    return 0
