"""argparse types shared by the subcommands, so every duration and port is refused the same way."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(*, allow_zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, > 0 (or >= 0 with `allow_zero`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number of seconds")
        if value < 0 or (value == 0 and not allow_zero):
            bound = "0 or more" if allow_zero else "more than 0"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {bound} seconds")
        return value

    parse.__name__ = "seconds"  # argparse names the type in some messages
    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from 0 to 65535 (0: any free port), got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (a count of conversations, cases, repeats)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value
