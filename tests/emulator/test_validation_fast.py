"""The audioInput fast path of InputValidator: the same verdict as the full path, for any event.

The fast path skips the JSON schema for audioInput events once the first audio event of their
block has passed it. These tests hold it to the full path's verdict (accepted with the same body
and PCM, or refused with the same message) over generated events and stream states, and check
that it really is taken (and that each block's first audio event is not).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.emulator import validation
from runner.emulator.validation import INVALID_INPUT, InputValidator, NovaValidationError
from tests.emulator.fakes import (
    PROMPT,
    V2,
    audio_input,
    audio_start,
    content_end,
    ev,
    opening,
    raw,
    text_start,
)

PCM = bytes(range(256)) * 4

# Stream states the audio event may arrive in (events after the opening).
STATES: dict[str, list[dict[str, Any]]] = {
    "block open, first audio checked": [audio_start(), audio_input(PCM)],
    "block open, no audio yet": [audio_start()],
    "text block open too": [audio_start(), audio_input(PCM), text_start("t", "USER", interactive=True)],
    "block closed": [audio_start(), audio_input(PCM), content_end("audio")],
    "second block": [audio_start(), audio_input(PCM), content_end("audio"), audio_start("audio2"),
                     audio_input(PCM, "audio2")],
    "prompt ended": [audio_start(), audio_input(PCM), ev("promptEnd", promptName=PROMPT)],
    "session ended": [audio_start(), audio_input(PCM), ev("promptEnd", promptName=PROMPT),
                      ev("sessionEnd")],
}

names = st.sampled_from([PROMPT, "audio", "audio2", "t", "", "x" * 257, "p\ud800", "nope"])
contents = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),  # odd lengths too
    st.sampled_from(["", "AAA", "AA=A", "AAAA\n", "AAAA====", "ÄAAA", "\ud800AAA", "AA\"A"]),
)
values = st.one_of(names, contents, st.integers(), st.none(), st.lists(st.integers(), max_size=2),
                   st.booleans())
good_content = st.binary(max_size=32).map(lambda b: base64.b64encode(b + b if len(b) % 2 else b).decode())
bodies = st.one_of(
    # valid in the usual state, or nearly: one field at a time may be off
    st.fixed_dictionaries({"promptName": st.just(PROMPT), "contentName": st.just("audio"),
                           "content": good_content}),
    st.fixed_dictionaries({"promptName": st.one_of(st.just(PROMPT), names),
                           "contentName": st.one_of(st.just("audio"), names),
                           "content": st.one_of(good_content, contents)}),
    # the right shape, with any of the three strings
    st.fixed_dictionaries({"promptName": names, "contentName": names, "content": contents}),
    # any shape
    st.dictionaries(st.sampled_from(["promptName", "contentName", "content", "extra"]), values,
                    max_size=5),
)
events = st.one_of(
    bodies.map(lambda body: {"event": {"audioInput": body}}),
    bodies.map(lambda body: {"event": {"audioInput": body}}),
    bodies.map(lambda body: {"event": {"audioInput": body}, "extra": 1}),
    bodies.map(lambda body: {"event": {"audioInput": body, "textInput": body}}),
    bodies.map(lambda body: {"event": {"textInput": body}}),
)
encodings: dict[str, Callable[[Any], bytes]] = {
    "json": lambda event: json.dumps(event).encode(),
    "utf-8": lambda event: json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    "utf-16": lambda event: json.dumps(event).encode("utf-16"),
    "compact": lambda event: json.dumps(event, separators=(",", ":")).encode(),
}


def verdict(validator: InputValidator, payload: bytes) -> tuple[str, Any]:
    try:
        event = validator.check(payload)
    except NovaValidationError as exc:
        return "refused", exc.message
    block = event.block
    return "accepted", (event.name, event.body, event.audio, block and (block.type, block.role))


def validator_in(state: str, *, fast: bool) -> InputValidator:
    validator = InputValidator(V2)
    if not fast:
        validator._audio_fast = lambda payload: None  # type: ignore[method-assign]
    for event in [*opening(), *STATES[state]]:
        validator.check(raw(event))
    return validator


@settings(max_examples=200, deadline=None)
@given(state=st.sampled_from(sorted(STATES)), event=events, encoding=st.sampled_from(sorted(encodings)))
def test_fast_path_gives_the_full_paths_verdict(state: str, event: dict[str, Any], encoding: str) -> None:
    try:
        payload = encodings[encoding](event)
    except UnicodeEncodeError:  # a lone surrogate in UTF-16: not a payload anyone can send
        return
    fast, full = validator_in(state, fast=True), validator_in(state, fast=False)
    assert verdict(fast, payload) == verdict(full, payload)
    # The state they leave behind is the same too: the next (valid) audio event agrees.
    follow = raw(audio_input(PCM))
    assert verdict(fast, follow) == verdict(full, follow)


def test_valid_audio_takes_the_fast_path_after_the_blocks_first_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    schema_checks: list[str] = []
    real = validation.validate_event

    def counting(name: str, payload: Any) -> list[str]:
        schema_checks.append(name)
        return real(name, payload)

    monkeypatch.setattr(validation, "validate_event", counting)
    validator = InputValidator(V2)
    for event in [*opening(), audio_start()]:
        validator.check(raw(event))
    schema_checks.clear()
    for _ in range(5):
        assert validator.check(raw(audio_input(PCM))).audio == PCM
    assert schema_checks == ["audioInput"]  # the block's first audio event only
    for event in [content_end("audio"), audio_start("audio2"), audio_input(PCM, "audio2"),
                  audio_input(PCM, "audio2")]:
        validator.check(raw(event))
    assert schema_checks == ["audioInput", "contentEnd", "contentStart", "audioInput"]


def test_a_malformed_audio_event_after_valid_ones_gets_the_usual_error() -> None:
    validator = validator_in("block open, first audio checked", fast=True)
    bad = {"event": {"audioInput": {"promptName": PROMPT, "contentName": "audio", "content": "AAA"}}}
    with pytest.raises(NovaValidationError) as caught:
        validator.check(raw(bad))
    # the opening (6 events), the block's contentStart and first audio event, then this one
    assert caught.value.message == f"{INVALID_INPUT} (input event #8: audioInput)"
