"""The `--var name=value` command-line option shared by every command that loads an agent."""

from __future__ import annotations

import argparse


def parse_var(text: str) -> tuple[str, str]:
    """argparse `type=` for `--var`: `name=value` -> (name, value); the value may contain '='."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def add_var_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--var", dest="vars", metavar="NAME=VALUE", type=parse_var, action="append", default=[],
        help="override a variable declared under `vars:` (repeatable); the value is converted to the "
             "type of the declared default")


def var_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The `--var` options as a mapping (a later repetition of a name wins)."""
    return dict(getattr(args, "vars", None) or [])
