"""Runs one conversation per connected caller (filled in by the next commit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.serve.context import ServeContext
    from runner.serve.frontends.base import CallerIO


async def run_caller(ctx: ServeContext, caller: CallerIO) -> None:
    raise NotImplementedError("serve: converse is a stub in this commit")
