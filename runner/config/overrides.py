"""The `--var name=value` command-line option shared by every command that loads an agent."""

from __future__ import annotations

import argparse

from runner.config.yaml import check_text


def _shown(text: str) -> str:
    """`text` for a message: escaped (no control characters reach the terminal) and shortened."""
    shown = text if len(text) <= 40 else f"{text[:30]}...({len(text)} characters)"
    return ascii(shown) if not shown.isprintable() else repr(shown)


def _undecodable(text: str) -> str | None:
    """Why `text` from argv is not UTF-8 text: Python decodes argv bytes with surrogateescape,
    so each byte that is not UTF-8 arrives as a lone surrogate U+DC80..U+DCFF."""
    for index, char in enumerate(text):
        if 0xDC80 <= ord(char) <= 0xDCFF:
            at = len(text[:index].encode("utf-8", "surrogateescape")) + 1
            return f"is not UTF-8 text (byte 0x{ord(char) - 0xDC00:02x} at byte {at})"
    return None


def parse_var(text: str) -> tuple[str, str]:
    """argparse `type=` for `--var`: `name=value` -> (name, value); the value may contain '='.

    Names and values go into the system prompt and on to the model as JSON: text that cannot be
    encoded (bytes that are not UTF-8) or holds control characters is refused here, naming the
    variable, rather than crashing later.
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {_shown(text)}")
    name = name.strip()
    if _undecodable(name) or check_text(name) or not name.isprintable():
        raise argparse.ArgumentTypeError(f"{_shown(name)} is not a variable name (letters, digits, '_')")
    control = check_text(value)
    problem = _undecodable(value) or (f"has a {control}" if control else None)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"the value of {name} {problem}")
    return name, value


def add_var_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--var", dest="vars", metavar="NAME=VALUE", type=parse_var, action="append", default=[],
        help="override a variable declared under `vars:` (repeatable); the value is converted to the "
             "type of the declared default")


def var_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The `--var` options as a mapping (a later repetition of a name wins)."""
    return dict(getattr(args, "vars", None) or [])
