"""Which override template to blame when the service refuses an event (issue 8), as a pure function."""

from __future__ import annotations

from runner.protocol.templates import TEMPLATE_EVENTS, TemplateSource, blame_overrides

BUILTIN = {name: TemplateSource("", f"<built-in>/{name}.json.j2") for name in TEMPLATE_EVENTS}


def with_overrides(*names: str) -> dict[str, TemplateSource]:
    return BUILTIN | {name: TemplateSource("", f"tpl/{name}.json.j2") for name in names}


def test_no_override_no_blame() -> None:
    assert blame_overrides("Received invalid id: 'zed'. (input event #2: promptStart)", BUILTIN) is None
    assert blame_overrides("Received invalid id: 'zed'.", BUILTIN) is None


def test_a_named_event_blames_the_override_that_renders_it() -> None:
    sources = with_overrides("promptStart", "sessionEnd")
    assert blame_overrides("Received invalid id: 'zed'. (input event #2: promptStart)", sources) == \
        "the refused promptStart event was rendered by the override tpl/promptStart.json.j2"


def test_contentstart_blames_every_override_that_renders_a_contentstart() -> None:
    sources = with_overrides("contentStartAudio", "contentStartTool", "textInput")
    assert blame_overrides("Invalid input (input event #3: contentStart)", sources) == (
        "the refused contentStart event was rendered by one of the overrides "
        "tpl/contentStartAudio.json.j2, tpl/contentStartTool.json.j2")


def test_a_named_event_that_no_override_renders_blames_none() -> None:
    assert blame_overrides("bad (input event #7: audioInput)", with_overrides("promptStart")) is None


def test_without_an_event_name_every_override_is_the_likely_cause() -> None:
    assert blame_overrides("Received invalid id: 'zed'.", with_overrides("promptStart", "sessionEnd")) == (
        "this agent overrides event templates, the likely cause: tpl/promptStart.json.j2, "
        "tpl/sessionEnd.json.j2")
