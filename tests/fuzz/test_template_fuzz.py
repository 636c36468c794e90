"""Event templates: variations of runner/protocol/templates/*.json.j2 (valid ones, broken Jinja,
broken JSON, bad bytes, runaway loops) as an agent's override. The agent check refuses a broken
override with a located problem, never another exception, within the budget; rendering the
templates directly raises only EventTemplateError/ConfigError; a sample goes through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.config.loader import check_agent
from runner.errors import ConfigError
from runner.protocol.templates import SAMPLE_CONTEXTS, TEMPLATE_EVENTS, EventTemplates, TemplateSource
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.invariant import AGENT_CHECK_BUDGET_S, REPO, check_problems, outcome, run_cli
from tests.fuzz.mutate import mutate_text

BUILTIN = {
    name: (REPO / "runner" / "protocol" / "templates" / f"{name}.json.j2").read_text()
    for name in TEMPLATE_EVENTS
}
AGENT = (
    "version: 1\nname: templated\nmodel: {id: amazon.nova-2-sonic-v1:0}\nvoice: matthew\n"
    "system_prompt: You are helpful.\ntemplates: templates\n"
    "tools:\n  - name: calc\n    description: Calculates.\n    input_schema: {type: object}\n"
    "    handler: builtin:calculator\n"
)

_JINJA = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "{{ x }}",
    "{{ prompt_name }}",
    "{{ prompt_name | tojson }}",
    "{{ content }}",
    "{% if %}",
    "{% endif %}",
    "{% for i in range(10**9) %}{{ i }}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ 1/0 }}",
    "{% raw %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{{ range(10**9) | list }}",
    "{% include 'x' %}",
    "{% extends 'sessionEnd.json.j2' %}",
    "{{ lipsum(10**6) }}",
    "{% set x = [] %}{% for i in range(10**6) %}{% do x.append(i) %}{% endfor %}",
    "{{ self }}",
    "{{ cycler }}",
    "{{ namespace }}",
    "{{ 9 ** 9 ** 9 }}",
    "{{ '%s' % 'x' * 10**8 }}",
]
_JSON = [
    ",",
    "}",
    "{",
    "]",
    "[",
    '"',
    ":",
    "null",
    "NaN",
    "Infinity",
    "1e999",
    "9" * 5000,
    "\\",
    '"\\ud800"',
    "[" * 5000,
    '{"a": 1, "a": 2}',
    "true",
    "\x00",
]


@st.composite
def template_texts(draw: st.DrawFn, name: str) -> bytes:
    text = BUILTIN[name]
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(st.sampled_from(_JINJA + _JSON)) + text[at + cut :]
    if draw(st.booleans()):
        return draw(mutate_text(text))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def overrides(draw: st.DrawFn) -> dict[str, bytes]:
    names = draw(st.lists(st.sampled_from(sorted(TEMPLATE_EVENTS)), min_size=1, max_size=3, unique=True))
    return {name: draw(template_texts(name)) for name in names}


def _write(folder: Path, templates: dict[str, bytes]) -> Path:
    shutil_folder = folder / "templates"
    for old in shutil_folder.glob("*"):
        old.unlink()
    for name, raw in templates.items():
        (shutil_folder / f"{name}.json.j2").write_bytes(raw)
    return folder / "agent.yaml"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fuzz-templates")
    (base / "templates").mkdir()
    (base / "agent.yaml").write_text(AGENT)
    return base


@fuzz_settings(40)
@given(templates=overrides())
def test_template_overrides_load_or_get_located_problems(folder: Path, templates: dict[str, bytes]) -> None:
    path = _write(folder, templates)
    result = outcome(lambda: check_agent(path), seconds=AGENT_CHECK_BUDGET_S)
    if isinstance(result, BaseException):
        return  # a known open bug (known_bugs.py)
    config, problems = result
    check_problems(problems, valid=config is not None)


@fuzz_settings(40)
@given(name=st.sampled_from(sorted(TEMPLATE_EVENTS)), data=st.data())
def test_rendering_a_mutated_template_gives_an_event_or_a_template_error(
    name: str, data: st.DataObject
) -> None:
    raw = data.draw(template_texts(name))
    text = raw.decode("utf-8", "replace")

    def render() -> object:
        sources = {n: TemplateSource(BUILTIN[n], f"builtin:{n}") for n in TEMPLATE_EVENTS}
        sources[name] = TemplateSource(text, f"templates/{name}.json.j2")
        return EventTemplates(sources).render(name, SAMPLE_CONTEXTS[name])

    result = outcome(render, allowed=(ConfigError,))
    if isinstance(result, ConfigError):
        assert str(result)
    elif not isinstance(result, BaseException):  # else: a known open bug (known_bugs.py)
        assert isinstance(result, dict) and "event" in result


@fuzz_settings(3)
@given(templates=overrides())
def test_template_overrides_through_the_real_cli(folder: Path, templates: dict[str, bytes]) -> None:
    path = _write(folder, templates)
    checked = run_cli("check", path, tolerate_known=True)
    rendered = run_cli("render", path, tolerate_known=True)
    if checked.known_bug or rendered.known_bug:
        return  # a known open bug (known_bugs.py)
    assert (checked.code == 0) == (rendered.code == 0), checked.describe() + rendered.describe()
