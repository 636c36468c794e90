"""The docs say what the code does: lists that come from registries, handler rules, citations.

Lists a user reads (built-in handlers, event-template names) are printed by the CLI from the
registries themselves, and the README and schema copies are compared with those registries here,
so adding a built-in or a template without documenting it fails a test.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.protocol.templates import TEMPLATE_EVENTS, TEMPLATE_SUFFIX
from runner.schemas import AGENT, load_schema
from runner.tools.builtins import BUILTINS
from runner.tools.invoke import invoke_tool

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
REFERENCE = ROOT.parent / "shared" / "reference"


def agent_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def readme_paragraph(start: str) -> str:
    """The README paragraph that begins with `start`."""
    (paragraph,) = [p for p in README.split("\n\n") if p.startswith(start)]
    return paragraph


# --- built-in handlers --------------------------------------------------------------------------

def test_list_builtins_prints_the_registry_with_arguments() -> None:
    result = agent_run("check", "--list-builtins")
    assert result.returncode == 0, result.stderr
    heads = [line for line in result.stdout.splitlines() if line.startswith("builtin:")]
    assert [h.split("(")[0].removeprefix("builtin:") for h in heads] == list(BUILTINS)
    assert "builtin:calculator(expression: str)" in heads
    # Each entry has its one-line summary under it.
    assert len(result.stdout.splitlines()) == 2 * len(BUILTINS)


def test_check_help_names_the_builtins_from_the_registry() -> None:
    result = agent_run("check", "--help")
    text = " ".join(result.stdout.split())
    assert f"built-in tool handlers (handler: builtin:NAME): {', '.join(BUILTINS)};" in text
    assert "--list-builtins" in text


def test_readme_and_schema_list_exactly_the_registered_builtins() -> None:
    paragraph = readme_paragraph("**Built-in handlers**")
    assert re.findall(r"`builtin:(\w+)`", paragraph) == list(BUILTINS)
    handler = load_schema(AGENT)["properties"]["tools"]["items"]["properties"]["handler"]["description"]
    (listed,) = re.findall(r"'builtin:<name>' \(([^;)]*)", handler)
    assert listed.split(", ") == list(BUILTINS)


def test_check_without_files_asks_for_them() -> None:
    result = agent_run("check")
    assert result.returncode == 2 and "FILE (or --list-builtins)" in result.stderr


# --- event templates ----------------------------------------------------------------------------

def test_list_templates_prints_each_name_and_the_event_it_renders() -> None:
    result = agent_run("render", "--list-templates")
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 2) for line in result.stdout.splitlines()]
    assert [(file, event) for file, event, _ in rows] == [
        (f"{name}{TEMPLATE_SUFFIX}", event) for name, event in TEMPLATE_EVENTS.items()]
    about = {file: text for file, _, text in rows}
    assert "tool_use_id" in about["contentStartTool.json.j2"]  # the variables a template gets
    assert "--list-templates" in agent_run("render", "--help").stdout


def test_readme_lists_exactly_the_template_names() -> None:
    paragraph = readme_paragraph("**Event templates.**")
    names = re.findall(r"`(\w+)`", paragraph.split("renders and its variables:")[1])
    assert names == list(TEMPLATE_EVENTS)


def test_render_without_an_agent_asks_for_one() -> None:
    result = agent_run("render")
    assert result.returncode == 2 and "AGENT (or --list-templates)" in result.stderr


# --- what handlers may be and return (README "Tool handlers") ------------------------------------

async def _async_handler(x: int) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"double": 2 * x}


def _returns(value: Any) -> Any:
    def handler() -> Any:
        return value
    return handler


SCHEMA_X = {"type": "object", "properties": {"x": {"type": "integer"}}}


@pytest.mark.parametrize(("value", "sent"), [
    ({"a": 1}, {"a": 1}),
    ('{"a": 1}', {"a": 1}),
    ("plain text", {"result": "plain text"}),
    ("[1, 2]", {"result": "[1, 2]"}),
    ([1, 2], {"result": [1, 2]}),
    (3.5, {"result": 3.5}),
    (None, {"result": None}),
])
def test_what_a_handler_returns_is_sent_as_the_readme_says(value: Any, sent: dict[str, Any]) -> None:
    outcome = asyncio.run(invoke_tool(_returns(value), {}, input_schema={"type": "object"}, timeout_s=5))
    assert outcome.ok and json.loads(outcome.result_json) == sent


def test_non_json_results_and_async_handlers_as_the_readme_says() -> None:
    paragraph = readme_paragraph("**Tool handlers.**")
    assert "`async def`" in paragraph and "`{\"result\": ...}`" in paragraph
    assert "not JSON-serialisable" in paragraph and "`{\"error\": ..., \"tool\": ...}`" in paragraph
    bad = asyncio.run(invoke_tool(_returns(object()), {}, input_schema={"type": "object"}, timeout_s=5))
    assert not bad.ok and json.loads(bad.result_json)["error"].startswith("result is not JSON-serialisable")
    good = asyncio.run(invoke_tool(_async_handler, {"x": 4}, input_schema=SCHEMA_X, timeout_s=5))
    assert good.ok and json.loads(good.result_json) == {"double": 8}


# --- § citations ----------------------------------------------------------------------------------

_DOC = re.compile(r"([\w-]+\.md)")
_CITE = re.compile(r"§\s*(\d+(?:\.\d+)*)(?:\s+rule\s+(\d+))?")


def _citations(text: str) -> list[tuple[str, str, str | None]]:
    """(document, section, rule) for every § in `text`; a bare § cites the last document named
    before it in the same file (nova-sonic-protocol.md when none is)."""
    found = []
    for match in _CITE.finditer(text):
        docs = _DOC.findall(text, 0, match.start())
        found.append((docs[-1] if docs else "nova-sonic-protocol.md", match.group(1), match.group(2)))
    return found


def _sections(doc: str) -> dict[str, str]:
    """Section number -> its text (up to the next heading of any level)."""
    text = (REFERENCE / doc).read_text(encoding="utf-8")
    parts = re.split(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s.*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_citation_parser_reads_the_forms_in_use() -> None:
    text = "(nova-sonic-protocol.md §2.4/§2.5) then §9, bedrock-sdk.md §6, §2.5 rule 2"
    assert _citations(text) == [
        ("nova-sonic-protocol.md", "2.4", None), ("nova-sonic-protocol.md", "2.5", None),
        ("nova-sonic-protocol.md", "9", None), ("bedrock-sdk.md", "6", None), ("bedrock-sdk.md", "2.5", "2")]


def test_every_section_cited_in_runner_and_the_readme_exists() -> None:
    if not (REFERENCE / "nova-sonic-protocol.md").is_file():
        pytest.skip(f"the protocol reference is not at {REFERENCE} (it lives beside the repository, "
                    "in ../shared/reference, on the project's machines only)")
    files = [ROOT / "README.md", *sorted((ROOT / "runner").rglob("*.py"))]
    wrong = []
    checked = 0
    for file in files:
        for doc, section, rule in _citations(file.read_text(encoding="utf-8")):
            if not (REFERENCE / doc).is_file():
                wrong.append(f"{file.relative_to(ROOT)}: {doc} §{section}: no such reference document")
                continue
            sections = _sections(doc)
            checked += 1
            if section not in sections:
                wrong.append(f"{file.relative_to(ROOT)}: {doc} §{section}: no such section")
            elif rule is not None and not re.search(rf"^{rule}\. ", sections[section], re.MULTILINE):
                wrong.append(f"{file.relative_to(ROOT)}: {doc} §{section} rule {rule}: no such rule")
    assert checked > 20  # the citations were found and read
    assert wrong == []

