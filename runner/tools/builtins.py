"""Built-in tool handlers, usable as `handler: builtin:<name>` so an agent needs no Python.

Each is a plain typed function whose keyword parameters are the tool's input properties; it
returns JSON-serialisable data and raises ToolError (sent to the model as an error result) for
bad input.
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.errors import ToolError


def current_datetime(timezone: str = "UTC") -> dict[str, Any]:
    """The current date and time in an IANA timezone (e.g. "America/Los_Angeles")."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown timezone {timezone!r}; use an IANA name like 'Europe/Paris'") from None
    now = datetime.now(zone)
    return {
        "formatted_time": now.strftime("%I:%M %p"),
        "date": now.strftime("%Y-%m-%d"),
        "year": now.year,
        "month": now.month,
        "day": now.day,
        "day_of_week": now.strftime("%A"),
        "timezone": timezone,
        "utc_offset": now.strftime("%z"),
        "iso": now.isoformat(timespec="seconds"),
    }


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "round": round, "abs": abs, "min": min, "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPRESSION = 200
# Bounds keep a spoken "two to the power of a billion" from hanging the runner.
_MAX_EXPONENT = 1000
_MAX_MAGNITUDE = 1e100


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > _MAX_EXPONENT or abs(left) > _MAX_MAGNITUDE):
            raise ToolError("number too large")
        result = _BINARY[type(node.op)](left, right)
        if abs(result) > _MAX_MAGNITUDE:
            raise ToolError("number too large")
        return result  # type: ignore[no-any-return]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))  # type: ignore[no-any-return]
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r} (known: {', '.join([*_CONSTANTS, *_FUNCTIONS])})")
    raise ToolError(f"unsupported expression element: {type(node).__name__}")


def calculator(expression: str) -> dict[str, Any]:
    """Evaluates an arithmetic expression (+ - * / // % **, parentheses, sqrt, round, abs, min, max)."""
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError("expression too long")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _evaluate(tree)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, float):
        value = round(value, 10)
    return {"expression": expression, "result": value}


def days_between(start_date: str, end_date: str) -> dict[str, Any]:
    """Whole days from start_date to end_date (ISO dates, YYYY-MM-DD), e.g. nights of a stay."""
    try:
        start = datetime.fromisoformat(start_date).date()
        end = datetime.fromisoformat(end_date).date()
    except ValueError:
        raise ToolError("dates must be written YYYY-MM-DD") from None
    return {"start_date": start.isoformat(), "end_date": end.isoformat(), "days": (end - start).days,
            "start_weekday": start.strftime("%A"), "end_weekday": end.strftime("%A")}


BUILTINS: dict[str, Callable[..., Any]] = {
    "current_datetime": current_datetime,
    "calculator": calculator,
    "days_between": days_between,
}


def builtin_listing() -> list[str]:
    """One line per built-in handler, from the registry itself: `builtin:NAME(params)  summary`."""
    lines = []
    for name, fn in BUILTINS.items():
        params = ", ".join(str(p) for p in inspect.signature(fn, eval_str=True).parameters.values())
        summary = (inspect.getdoc(fn) or "").splitlines()[0]
        lines.append(f"builtin:{name}({params})\n    {summary}")
    return lines
