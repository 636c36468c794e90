"""Which version of a distribution is installed, for the fast paths that rely on a pinned
dependency's internals (sdk_send.py, sdk_receive.py, crt.py): with any other version they stand
aside, and each says once why."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Mapping


@functools.cache
def installed(distribution: str) -> str | None:
    """The installed version of `distribution`, None if it is not installed (asked once)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def pin_problem(pins: Mapping[str, str]) -> str | None:
    """Why these pins (distribution -> version) do not hold, or None when every one does."""
    for name, pinned in pins.items():
        found = installed(name)
        if found != pinned:
            return f"{name} is {found or 'not installed'}, the fast path knows {pinned}"
    return None


# The fast paths that have said why they stand aside (each says it once per process).
logged_fallbacks: set[str] = set()


def log_fallback_once(path: str, instead: str, problem: str) -> None:
    """Say once per process, at debug level, why fast path `path` stands aside for `instead`."""
    if path not in logged_fallbacks:
        logged_fallbacks.add(path)
        logging.getLogger("runner.transport").debug("%s fast path off, using %s: %s", path, instead, problem)
