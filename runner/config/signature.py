"""Checks that a handler can be called with the arguments its tool's input_schema allows.

The model sends a JSON object; the runner passes its properties as keyword arguments. So every
property must be accepted (or `**kwargs` present), and every parameter without a default must be
a property the schema makes required, or calls would fail at run time with a TypeError.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

_P = inspect.Parameter


def signature_problems(function: Callable[..., Any], input_schema: Mapping[str, Any]) -> list[str]:
    """Every incompatibility between `function`'s parameters and `input_schema` (empty when fine)."""
    try:
        sig = inspect.signature(function)
    except (TypeError, ValueError):
        return []  # some C callables have no introspectable signature: nothing to check
    properties = input_schema.get("properties")
    props = [p for p in properties if isinstance(p, str)] if isinstance(properties, dict) else []
    required_list = input_schema.get("required")
    required = {r for r in required_list if isinstance(r, str)} if isinstance(required_list, list) else set()
    params = list(sig.parameters.values())
    by_keyword = {p.name for p in params if p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)}
    problems = []
    for p in params:
        if p.default is not _P.empty or p.kind in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD):
            continue
        if p.kind is _P.POSITIONAL_ONLY:
            problems.append(f"parameter {p.name!r} is positional-only, but tool arguments are passed "
                            f"by keyword")
        elif p.name not in props:
            problems.append(f"parameter {p.name!r} has no default and is not a property of input_schema")
        elif p.name not in required:
            problems.append(f"parameter {p.name!r} has no default, but input_schema does not list it "
                            f"in 'required' (the model may omit it)")
    if not any(p.kind is _P.VAR_KEYWORD for p in params):
        for name in props:
            if name not in by_keyword:
                kind = "required property" if name in required else "property"
                problems.append(f"input_schema {kind} {name!r} is not a parameter of the function "
                                f"(add it, or accept **kwargs)")
    return problems
