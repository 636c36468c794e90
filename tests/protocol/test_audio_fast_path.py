"""The audioInput fast path (EventTemplates.audio_input_encoder) makes byte-identical events to the
template path, for the built-in template and for overrides; overrides it cannot prove splittable
take the template path."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.config.templates import builtin_sources
from runner.protocol.events import AudioInput
from runner.protocol.session import Session
from runner.protocol.setup import SessionSetup
from runner.protocol.templates import EventTemplates, TemplateSource

NOVA2 = "amazon.nova-2-sonic-v1:0"

# Overrides the fast path takes: the content spliced once, as `tojson`, outside loops and filters.
SPLITTABLE = {
    "reordered, compact": (
        '{"event":{"audioInput":{"content":{{content|tojson}},"contentName":{{content_name|tojson}},'
        '"promptName":{{prompt_name|tojson}}}}}'),
    "comments, whitespace control, set, if": (
        "{# my override #}\n{%- set p = prompt_name -%}\n"
        '{"event": {"audioInput": {\n  "promptName": {{ p | tojson }},\n'
        '{% if content_name.startswith("x") %}  "contentName": {{ content_name | tojson }},\n'
        '{% else %}  "contentName"   :   {{ content_name|tojson }} ,\n{% endif %}'
        '  "content": {{- content | tojson -}}\n}}}\n'),
    "content under an if": (
        '{"event": {"audioInput": {"promptName": {{ prompt_name | tojson }}, '
        '"contentName": {{ content_name | tojson }}, '
        '{% if prompt_name %}"content": {{ content | tojson }}{% endif %}}}}'),
}
# Overrides that must take the template path: the content transformed, repeated, inspected or
# (for the duplicate key) dropped from the event by the JSON parse.
FALLBACK = {
    "no tojson": ('{"event": {"audioInput": {"promptName": {{ prompt_name | tojson }}, '
                  '"contentName": {{ content_name | tojson }}, "content": "{{ content }}"}}}'),
    "inspected": ('{"event": {"audioInput": {"promptName": {{ prompt_name | tojson }}, '
                  '"contentName": {{ content_name | tojson }}, '
                  '"content": {% if content | length > 8 %}{{ content | tojson }}'
                  '{% else %}"AAAA"{% endif %}}}}'),
    "filtered": ('{"event": {"audioInput": {"promptName": {{ prompt_name | tojson }}, '
                 '"contentName": {{ content_name | tojson }}, '
                 '"content": {{ content | reverse | join | tojson }}}}}'),
    "filter block": ('{% filter replace("Q", "Q") %}{"event": {"audioInput": {"promptName": '
                     '{{ prompt_name | tojson }}, "contentName": {{ content_name | tojson }}, '
                     '"content": {{ content | tojson }}}}}{% endfilter %}'),
    "in a loop": ('{"event": {"audioInput": {"promptName": {{ prompt_name | tojson }}, '
                  '"contentName": {{ content_name | tojson }}, '
                  '"content": {% for _ in range(1) %}{{ content | tojson }}{% endfor %}}}}'),
    "tojson of an expression": ('{"event": {"audioInput": {"promptName": {{ prompt_name | tojson }}, '
                                '"contentName": {{ content_name | tojson }}, '
                                '"content": {{ (content ~ "") | tojson | safe }}}}}'),
    "duplicate key": ('{"event": {"audioInput": {"promptName": {{ prompt_name | tojson }}, '
                      '"contentName": {{ content_name | tojson }}, "content": {{ content | tojson }}, '
                      '"content": "AAAA"}}}'),
}


def sources_with(audio_input: str | None) -> dict[str, TemplateSource]:
    sources = builtin_sources()
    if audio_input is not None:
        sources["audioInput"] = TemplateSource(audio_input, "overrides/audioInput.json.j2")
    return sources


def templates_with(audio_input: str | None) -> EventTemplates:
    return EventTemplates(sources_with(audio_input))


ALL = {"built-in": templates_with(None),
       **{name: templates_with(text) for name, text in {**SPLITTABLE, **FALLBACK}.items()}}

pcm_frames = st.binary(min_size=1, max_size=3000).map(lambda b: b[: len(b) - len(b) % 2] or b"\x00\x00")
names = st.text(min_size=1, max_size=40)


def template_path(templates: EventTemplates, prompt_name: str, content_name: str, pcm: bytes) -> bytes:
    event = AudioInput(prompt_name, content_name, base64.b64encode(pcm).decode("ascii"))
    return templates.render_bytes(event.TEMPLATE, event.context())


@pytest.mark.parametrize("name", ["built-in", *SPLITTABLE])
def test_splittable_templates_get_a_fast_path(name: str) -> None:
    assert ALL[name].audio_input_encoder("p-1", "c-1") is not None


@pytest.mark.parametrize("name", list(FALLBACK))
def test_unprovable_templates_take_the_template_path(name: str) -> None:
    assert ALL[name].audio_input_encoder("p-1", "c-1") is None


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["built-in", *SPLITTABLE]), prompt_name=names, content_name=names,
       pcm=pcm_frames)
def test_fast_path_is_byte_identical_to_the_template_path(name: str, prompt_name: str, content_name: str,
                                                          pcm: bytes) -> None:
    templates = ALL[name]
    encoder = templates.audio_input_encoder(prompt_name, content_name)
    expected = template_path(templates, prompt_name, content_name, pcm)
    if encoder is None:  # an id the template path itself refuses, or that defeats the split probes
        return
    assert encoder.encode(base64.b64encode(pcm)) == expected


class CountingTemplates(EventTemplates):
    """Counts template renders, to see which events took the template path."""

    def __init__(self, sources: Mapping[str, TemplateSource]) -> None:
        super().__init__(sources)
        self.rendered: list[str] = []

    def render(self, name: str, context: Mapping[str, Any]) -> dict[str, Any]:
        self.rendered.append(name)
        return super().render(name, context)


def counter(prefix: str = "id") -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers)}"


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(list(ALL)), frames=st.lists(pcm_frames, min_size=1, max_size=6),
       held=st.integers(min_value=0, max_value=3))
def test_session_sends_the_template_paths_bytes(name: str, frames: list[bytes], held: int) -> None:
    """Through the Session (held-back frames, then live ones), every audioInput is the template
    path's bytes; with a splittable template only the probes render, once per stream."""
    audio_input = None if name == "built-in" else {**SPLITTABLE, **FALLBACK}[name]
    templates = CountingTemplates(sources_with(audio_input))
    session = Session(SessionSetup(model_id=NOVA2, voice_id="matthew", system_prompt="Hi."), templates,
                      new_id=counter())
    for pcm in frames[:held]:
        session.send_audio(pcm)
    session.start()
    for pcm in frames[held:]:
        session.send_audio(pcm)
    payloads = [p for p in session.data_to_send() if b'"audioInput"' in p]
    assert session.audio_content_name is not None
    assert payloads == [template_path(templates, session.prompt_name, session.audio_content_name, pcm)
                        for pcm in frames[:held] + frames[held:]]
    renders = templates.rendered.count("audioInput") - len(frames)  # minus the expected values above
    if name in FALLBACK:
        assert renders >= len(frames)  # each frame took the template path
    else:
        assert renders == 3  # the split probes, once for the stream


def test_a_new_stream_gets_its_own_split() -> None:
    templates = CountingTemplates(builtin_sources())
    pcm = b"\x01\x00" * 512
    for prefix in ("first", "second"):
        session = Session(SessionSetup(model_id=NOVA2, voice_id="matthew", system_prompt="Hi."),
                          templates, new_id=counter(prefix))
        session.start()
        session.send_audio(pcm)
        session.send_audio(pcm)
        assert session.audio_content_name is not None
        sent = [p for p in session.data_to_send() if b'"audioInput"' in p]
        rendered = templates.rendered.count("audioInput")
        assert sent == [template_path(templates, session.prompt_name, session.audio_content_name, pcm)] * 2
    assert rendered == 6 + 1  # the probes once per stream, plus the first stream's expected value
