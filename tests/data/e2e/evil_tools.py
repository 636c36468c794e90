"""Tools of evil.yaml (tests/e2e/test_evil_tools.py): each fails in a way that breaks naive
error handling. The module itself has a __getattr__ that raises, so any hasattr()/getattr()
probing of it (at `check` or at run time) blows up unless the runner is careful."""

from __future__ import annotations

import asyncio
from typing import Any


def __getattr__(name: str) -> Any:
    raise RuntimeError(f"evil_tools has no {name} and says so rudely")


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("this message cannot be printed")


class NotAString(Exception):
    def __str__(self) -> str:
        return 42  # type: ignore[return-value]


class Opaque:
    """An object whose repr and str both raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")

    __str__ = __repr__


def unprintable() -> dict[str, Any]:
    raise Unprintable()


async def not_a_string() -> dict[str, Any]:
    raise NotAString()


def stop_sync() -> dict[str, Any]:
    raise StopIteration


async def stop_async() -> dict[str, Any]:
    raise StopIteration


async def cancelled() -> dict[str, Any]:
    raise asyncio.CancelledError()


def exit_opaque() -> dict[str, Any]:
    raise SystemExit(Opaque())


def opaque_result() -> Any:
    return Opaque()


def tuple_keys() -> dict[Any, Any]:
    return {(1, 2): "a pair as a key"}


def huge_int() -> dict[str, Any]:
    return {"n": 10 ** 5000}


def surrogate() -> dict[str, Any]:
    return {"text": "half a pair: \ud800"}


def fine() -> dict[str, Any]:
    return {"ok": True}
