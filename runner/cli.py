"""The `agent-run` command line.

`agent-run AGENT.yaml [options]` runs an agent (shorthand for `agent-run run AGENT.yaml`).
Subcommands live in `runner.commands.<name>`; each adds its own parser and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner import __version__
from runner.error_handler import error_handler, interrupted_code
from runner.signals import install_early

COMMANDS: tuple[str, ...] = ("run", "check", "test", "render", "serve", "emulate", "devices", "doctor")

DESCRIPTION = """\
Run declarative Amazon Nova Sonic voice agents from a YAML file.

  agent-run agents/orders.yaml                     talk to the agent (microphone and speakers)
  agent-run agents/orders.yaml --emulate           the same, against the built-in local emulator
  agent-run check agents/*.yaml                    validate agent files (no network)
  agent-run test agents/                           run the agents' conversation tests (*.test.yaml)
  agent-run render agents/orders.yaml              print the events that open a session
  agent-run serve agents/orders.yaml --emulate     serve it to callers: open http://127.0.0.1:8080/
  agent-run emulate --scenario s.yaml              serve a local Nova Sonic emulator
  agent-run devices                                list audio devices
  agent-run doctor [AGENT.yaml]                    check Python, SDK, AWS settings, audio, espeak-ng
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-run", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"agent-run {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"runner.commands.{name}")
        module.add_parser(sub)
    return parser


def _normalise(argv: list[str]) -> list[str]:
    # `agent-run AGENT.yaml ...` is the main job: treat a leading non-command as `run`.
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return ["run", *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the program itself (the `agent-run` script does not run __main__), not a caller
        install_early()
    try:
        args_list = _normalise(list(sys.argv[1:] if argv is None else argv))
        parser = build_parser()
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return 2
        with error_handler() as outcome:
            module = importlib.import_module(f"runner.commands.{args.command}")
            outcome.code = module.run(args)
        return outcome.code
    except KeyboardInterrupt as exc:  # a signal while parsing or importing, outside error_handler
        return interrupted_code(exc)
