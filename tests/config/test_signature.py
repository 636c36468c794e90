from __future__ import annotations

from typing import Any

import pytest

from runner.config.signature import signature_problems

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
          "required": ["a"]}


def exact(a: str, b: int = 0) -> None: ...
def kwargs_only(**kwargs: Any) -> None: ...
def extra_default(a: str, b: int = 0, c: bool = False) -> None: ...
def kw_only(*, a: str, b: int = 1) -> None: ...
def b_required(a: str, b: int) -> None: ...
def missing_b(a: str) -> None: ...
def unknown_param(a: str, b: int, z: int) -> None: ...
def positional_only(a: str, /, b: int = 0) -> None: ...
def no_params() -> None: ...


@pytest.mark.parametrize("function", [exact, kwargs_only, extra_default, kw_only])
def test_compatible(function: Any) -> None:
    assert signature_problems(function, SCHEMA) == []


@pytest.mark.parametrize(("function", "expected"), [
    (b_required, ["parameter 'b' has no default, but input_schema does not list it in 'required'"]),
    (missing_b, ["input_schema property 'b' is not a parameter of the function (add it, or accept "
                 "**kwargs)"]),
    (unknown_param, ["parameter 'b' has no default, but input_schema does not list it in 'required'",
                     "parameter 'z' has no default and is not a property of input_schema"]),
    (positional_only, ["parameter 'a' is positional-only, but tool arguments are passed by keyword",
                       "input_schema required property 'a' is not a parameter of the function"]),
    (no_params, ["input_schema required property 'a' is not a parameter",
                 "input_schema property 'b' is not a parameter"]),
])
def test_incompatible(function: Any, expected: list[str]) -> None:
    problems = signature_problems(function, SCHEMA)
    assert len(problems) == len(expected)
    for got, want in zip(problems, expected, strict=True):
        assert got.startswith(want)


def test_schema_without_properties_and_uninspectable_callables() -> None:
    assert signature_problems(no_params, {"type": "object"}) == []
    assert signature_problems(missing_b, {"type": "object"}) == [
        "parameter 'a' has no default and is not a property of input_schema"]
    assert signature_problems(dict, SCHEMA) == []  # no introspectable signature
