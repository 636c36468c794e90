"""`agent-run check FILE...`: report every problem in every agent file, without touching the network
(`--connect` also starts the agents' MCP servers and lists their tools)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from runner.config.loader import check_agent
from runner.config.model import AgentConfig
from runner.config.overrides import add_var_option, var_overrides
from runner.config.report import Problem, count, summary
from runner.testing.load import SUFFIX as TEST_SUFFIX
from runner.testing.load import check_tests
from runner.tools.builtins import BUILTINS, builtin_listing


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check", help="validate agent files (no network)",
        description="Check agent files: YAML, schema, model and voice, tools and their handlers, the "
                    "system prompt and template overrides, MCP server settings (and missing environment "
                    "variables, as warnings); test files (*.test.yaml) with their agent. "
                    "Prints FILE:LINE:COL: error: message for every problem; exits 1 when any file has "
                    "an error (warnings do not change it).",
        epilog=f"built-in tool handlers (handler: builtin:NAME): {', '.join(BUILTINS)}; "
               "--list-builtins shows their arguments.")
    p.add_argument("files", nargs="*", metavar="FILE", help="agent YAML files (or *.test.yaml test files)")
    p.add_argument("--json", action="store_true", help="print the problems as a JSON array")
    p.add_argument("--connect", action="store_true",
                   help="also start each agent's MCP servers (mcp_servers:), list the tools each offers "
                        "and which its allow list keeps, then stop them; exits 1 when a server cannot be "
                        "started. Without it, check starts nothing")
    p.add_argument("--list-builtins", action="store_true",
                   help="list the built-in tool handlers (handler: builtin:NAME), and exit")
    add_var_option(p)
    p.set_defaults(parser=p)


def run(args: argparse.Namespace) -> int:
    if args.list_builtins:
        for line in builtin_listing():
            print(line)
        return 0
    if not args.files:
        args.parser.error("the following arguments are required: FILE (or --list-builtins)")
    if args.connect and args.json:
        args.parser.error("--connect prints text: it cannot be used with --json")
    overrides = var_overrides(args)
    problems: list[Problem] = []
    connected: list[AgentConfig] = []
    for file in args.files:
        if str(file).endswith(TEST_SUFFIX):  # a test file (agent-run test): checked with its agent
            problems.extend(check_tests(file)[1])
            continue
        agent, found = check_agent(file, overrides)
        problems.extend(found)
        if args.connect and agent is not None and agent.mcp_servers:
            connected.append(agent)
    if args.json:
        print(json.dumps([p.to_json() for p in problems], indent=2))
    else:
        for problem in problems:
            print(problem.format())
        print(summary(len(args.files), problems))
    errors, _ = count(problems)
    reached = all([_connect(agent) for agent in connected])  # every agent's servers, even after a failure
    return 1 if errors or not reached else 0


def _connect(agent: AgentConfig) -> bool:
    """Start the agent's MCP servers, print what they offer; whether all of them could be used."""
    from runner.tools.sources import connect_report  # only --connect needs it

    lines, ok = asyncio.run(connect_report(agent))
    for line in lines:
        print(line)
    return ok
