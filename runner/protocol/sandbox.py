"""The Jinja sandbox every user template renders in, with a time and a size budget.

Jinja's own sandbox stops templates from reaching Python internals, but not from burning the
machine: `{% for i in range(100000) %}{% for j in range(100000) %}` runs for hours and
`{{ 'a' * 10**9 }}` allocates a gigabyte in one step. Here:

- one render may take at most MAX_RENDER_S: every `for` loop iterates through a counter that checks
  the deadline, and so does every call (macros recursing, methods), so nothing loops unchecked;
- no single step may build more than MAX_RENDER_CHARS (string or list repetition, `+`, `~`, `%`,
  `str.format`, `join`, `center`, `indent`, `replace` ... are checked *before* they allocate), nor an
  integer of more than MAX_INT_BITS bits (`**`, `*`), and the output is counted as it is produced;
- `range` keeps Jinja's sandbox limit (MAX_RANGE items).

Breaking a limit raises TemplateLimitError (a Jinja TemplateError), reported like any template
error with the template's file and line. Templates of this environment render through
`render_bounded` (their `render()` does too).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

MAX_RENDER_S = 0.5
MAX_RENDER_CHARS = 4 * 1024 * 1024
MAX_INT_BITS = 64 * 1024
__all__ = ["MAX_INT_BITS", "MAX_RANGE", "MAX_RENDER_CHARS", "MAX_RENDER_S", "BoundedSandbox",
           "TemplateLimitError", "render_bounded"]

_ITER_FILTER = "_agent_run_bounded_iter"
_TICK_EVERY = 64  # loop iterations between two looks at the clock
_deadline: ContextVar[float | None] = ContextVar("agent_run_render_deadline", default=None)


class TemplateLimitError(SecurityError):
    """A template went over the time or size budget."""


def _tick() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateLimitError(f"rendering took longer than {MAX_RENDER_S:g} s (a loop too large, or "
                                 f"recursion?); templates must render in well under a second")


def _too_large(what: str, size: int) -> TemplateLimitError:
    return TemplateLimitError(f"{what} would make {size} characters or items, more than the "
                              f"{MAX_RENDER_CHARS} a template may build")


def _check_size(what: str, size: int) -> None:
    if size > MAX_RENDER_CHARS:
        raise _too_large(what, size)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ints(values: Iterable[object], what: str) -> None:
    for value in values:
        if _is_int(value) and abs(value) > MAX_RENDER_CHARS:  # type: ignore[arg-type]
            raise TemplateLimitError(f"{what}: the number {value} is too large for a template "
                                     f"(at most {MAX_RENDER_CHARS})")


# `%5000000d`, `%*d`, `{:>5000000}`, `{:{width}}`: widths that allocate before anything can be counted.
_PERCENT_SPEC = re.compile(r"%[-+ #0-9.*]*")
_FORMAT_SPEC = re.compile(r"\{[^{}]*(\{[^{}]*\})?[^{}]*\}")
_BIG_NUMBER = re.compile(r"\d{7,}")


def _check_format_string(text: str, percent: bool) -> None:
    pattern = _PERCENT_SPEC if percent else _FORMAT_SPEC
    for spec in pattern.findall(text) if percent else (m.group(0) for m in pattern.finditer(text)):
        if _BIG_NUMBER.search(spec) or (percent and "*" in spec) or (not percent and spec.count("{") > 1):
            raise TemplateLimitError(f"format width {spec!r} is too large or not a literal number "
                                     f"(at most {MAX_RENDER_CHARS} characters)")


def _len(value: object) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        if _is_int(left) and _is_int(right):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimitError(f"the product would have more than {MAX_INT_BITS} bits")
        elif _is_int(right) or _is_int(left):
            count, seq = (right, left) if _is_int(right) else (left, right)
            _check_size("repeating a text or list", _len(seq) * max(count, 0))
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1 \
                and right * left.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"{left} ** {right} would have more than {MAX_INT_BITS} bits")
    elif operator == "+":
        _check_size("joining", _len(left) + _len(right))
    elif operator == "%" and isinstance(left, str):
        _check_format_string(left, percent=True)
        parts = right if isinstance(right, tuple) else (right,)
        _check_size("formatting", len(left) + sum(len(str(p)) for p in parts if isinstance(p, str)))


def _join_size(items: Sequence[Any], separator: str) -> int:
    return sum(len(str(i)) for i in items) + len(separator) * max(len(items) - 1, 0)


def _replace_size(text: str, old: str, new: str, count: int | None) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _check_str_method(method: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Size checks for the str methods that can allocate far more than their inputs."""
    text: str = method.__self__
    name = method.__name__
    if name in ("center", "ljust", "rjust", "zfill") and args and _is_int(args[0]):
        _check_size(f"str.{name}", args[0])
    elif name == "expandtabs":
        size = args[0] if args and _is_int(args[0]) else kwargs.get("tabsize", 8)
        _check_size("str.expandtabs", len(text) + text.count("\t") * max(int(size), 0))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _check_size("str.replace", _replace_size(text, args[0], args[1], args[2] if len(args) > 2 else None))
    elif name in ("format", "format_map"):
        _check_format_string(text, percent=False)
        _check_size("str.format", len(text) + sum(_len(a) for a in (*args, *kwargs.values())))


# Filters that can make much more than they are given, and how big their result would be.
def _join_filter(inner: Callable[..., str]) -> Callable[..., str]:
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        if attribute is None:
            _check_size("join", _join_size(items, str(d)))
        return inner(eval_ctx, items, d, attribute)
    return join


def _sized(measure: Callable[..., int], what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(inner: Callable[..., Any]) -> Callable[..., Any]:
        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_size(what, measure(*args, **kwargs))
            return inner(*args, **kwargs)
        return checked
    return wrap


def _indent_size(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> int:
    step = width if _is_int(width) else len(str(width))
    return len(str(s)) + (str(s).count("\n") + 1) * step


def _center_size(value: Any, width: Any = 80) -> int:
    return width if _is_int(width) else 0


def _replace_filter_size(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> int:
    return _replace_size(str(s), str(old), str(new), count if _is_int(count) else None)


def _format_filter_size(value: Any, *args: Any, **kwargs: Any) -> int:
    _check_format_string(str(value), percent=True)
    return len(str(value)) + sum(_len(a) for a in (*args, *kwargs.values()))


_SIZED_FILTERS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "join": _join_filter,
    "indent": _sized(_indent_size, "indent"),
    "center": _sized(_center_size, "center"),
    "replace": _sized(_replace_filter_size, "replace"),
    "format": _sized(_format_filter_size, "format"),
}


def _bounded_filter(name: str, inner: Callable[..., Any]) -> Callable[..., Any]:
    checked = _SIZED_FILTERS[name](inner) if name in _SIZED_FILTERS else inner
    skip = 1 + (getattr(inner, "jinja_pass_arg", None) is not None)  # the context, then the value

    @functools.wraps(inner)  # keeps `jinja_pass_arg` (pass_context & co.)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_ints((*args[skip:], *kwargs.values()), f"filter {name!r}")
        return checked(*args, **kwargs)

    return bounded


def _bounded_iter(value: Iterable[Any]) -> Iterator[Any]:
    """What every `for` loop iterates over: the value, with a look at the clock now and then."""
    for count, item in enumerate(value):
        if count % _TICK_EVERY == 0:
            _tick()
        yield item


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b` compiles to a plain "".join; this one counts first (autoescape is off here).
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BoundedTemplate(jinja2.Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        # Any caller's plain `render()` gets the budget too (e.g. the emulator's scenario texts).
        return render_bounded(self, dict(*args, **kwargs))


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with the time and size budget described above."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator
    template_class = _BoundedTemplate

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # lipsum(n=10**6) would spend seconds in one call
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_ITER_FILTER] = _bounded_iter

    def add_filter(self, name: str, function: Callable[..., Any]) -> None:
        """Install a filter under the same budget as the built-in ones."""
        self.filters[name] = _bounded_filter(name, function)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _ITER_FILTER, [], [], None, None, lineno=loop.iter.lineno)
        return tree

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any,
             *args: Any, **kwargs: Any) -> Any:
        _tick()
        method = getattr(__obj, "__wrapped__", __obj)  # str.format arrives wrapped by the sandbox
        if isinstance(getattr(method, "__self__", None), str):
            _check_str_method(method, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    @staticmethod
    def bounded_concat(parts: Iterable[Any]) -> str:
        texts = [str(p) for p in parts]
        _check_size("joining with ~", sum(len(t) for t in texts))
        return "".join(texts)


def render_bounded(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """`template.render(context)` within the time and output budget (TemplateLimitError if not)."""
    token = _deadline.set(time.monotonic() + MAX_RENDER_S)
    try:
        parts = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_RENDER_CHARS:
                raise TemplateLimitError(f"the rendered text is longer than {MAX_RENDER_CHARS} characters")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _deadline.reset(token)
