"""The template sandbox's time and size budget (issue 8): hostile templates fail fast, real ones render."""

from __future__ import annotations

import time

import pytest

from runner.protocol.sandbox import TemplateLimitError, render_bounded
from runner.protocol.templates import make_environment


def render(text: str, **context: object) -> str:
    return render_bounded(make_environment().from_string(text), context)


@pytest.mark.parametrize("text", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for c in 'a' * 100000 %}{% for d in 'a' * 100000 %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
], ids=["nested-range", "nested-string", "exponential-macro"])
def test_a_template_that_runs_too_long_stops_at_the_deadline(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=r"rendering took longer than 0\.5 s"):
        render(text)
    assert time.monotonic() - started < 5  # the deadline is 0.5 s; generous for a busy machine


@pytest.mark.parametrize(("text", "message"), [
    ("{{ 'a' * 10**9 }}", "repeating a text or list would make 1000000000"),
    ("{{ [1] * 10**9 }}", "repeating a text or list"),
    ("{{ 2 ** 1000000000 }}", "would have more than 65536 bits"),
    ("{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
     "the product would have more than"),
    ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "joining with ~ would make"),
    ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
     "joining would make"),
    ("{{ 'x'.center(10**9) }}", "str.center would make"),
    ("{{ 'x' | center(1000000000) }}", "filter 'center': the number 1000000000 is too large"),
    ("{{ [1, 2] | slice(1000000000) | list }}", "filter 'slice': the number"),
    ("{{ '{:>1000000000}'.format(1) }}", "format width '{:>1000000000}'"),
    ("{{ '{:>{w}}'.format(1, w=10**9) }}", "format width"),
    ("{{ '%1000000000d' % 1 }}", "format width '%1000000000'"),
    ("{{ '%*d' % (10**9, 1) }}", "format width '%*'"),
    ("{{ range(100000) | join('x' * 100000) }}", "join would make"),
    ("{{ ('a' * 1000000) | replace('a', 'bbbbbbbbbb') }}", "replace would make"),
    ("{{ ('a' * 1000000).replace('a', 'bbbbbbbbbb') }}", "str.replace would make"),
    ("{{ ('a\n' * 1000000) | indent(100) }}", "indent would make"),
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "the rendered text is longer than"),
])
def test_a_step_that_would_build_too_much_is_refused_before_it_allocates(text: str, message: str) -> None:
    with pytest.raises(TemplateLimitError, match=message.replace("(", r"\(").replace("*", r"\*")):
        render(text)


def test_range_keeps_the_sandbox_limit_and_lipsum_is_gone() -> None:
    with pytest.raises(OverflowError, match="Range too big"):
        render("{{ range(10**10) }}")
    with pytest.raises(Exception, match="'lipsum' is undefined"):
        render("{{ lipsum(n=1000000) }}")


def test_ordinary_templates_render_as_before() -> None:
    text = ("{{ d | tojson }} {{ 5 * 3 }} {{ 'ab' * 3 }} {{ 2 ** 10 }} {{ '%05d' % 3 }} "
            "{{ '{:>3}'.format(1) }} {% for x in items %}{{ loop.index }}{{ x }}{% endfor %} "
            "{{ items | join(',') }} {{ 'a' ~ 1 }} "
            "{{ name | center(9) }} {{ 'x\ny' | indent(2) }} {{ 'aXb' | replace('X', '-') }}")
    assert render(text, d={"a": "<b>"}, items=["p", "q"], name="bo") == (
        '{"a": "<b>"} 15 ababab 1024 00003   1 1p2q p,q a1     bo    x\n  y a-b')


def test_the_deadline_applies_per_render_not_per_environment() -> None:
    template = make_environment().from_string("{% for i in range(20000) %}{% endfor %}ok")
    for _ in range(3):
        assert render_bounded(template, {}) == "ok"
    assert template.render() == "ok"
    # A plain render() (as the emulator's scenario texts use) has the same budget.
    with pytest.raises(TemplateLimitError, match="rendering took longer"):
        make_environment().from_string(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").render()
