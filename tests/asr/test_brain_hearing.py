"""The brain's side of recognition (sans-IO, stepped clock): it asks for each utterance's audio to
be transcribed, keeps the USER block open meanwhile, and plays the turn with what was heard."""

from __future__ import annotations

from runner.emulator.scenario import parse_scenario
from tests.emulator.fakes import (
    PROMPT,
    BrainDriver,
    audio_start,
    content_end,
    ev,
    opening,
    silence,
    tone,
)

SCENARIO = parse_scenario({"turns": [
    {"user": "Where is my order 12345?", "assistant": [{"say": "You said: {{ user }}"}]},
    {"user": "Thanks, bye.", "assistant": [{"say": "Goodbye!"}]},
]})


def listening(rate: int = 16000) -> BrainDriver:
    driver = BrainDriver.make(SCENARIO, transcribe=True)
    driver.send(*opening(rate=rate), audio_start(rate=rate))
    return driver


def user_texts(driver: BrainDriver) -> list[str]:
    return [b["content"] for b in driver.bodies("textOutput") if b["role"] == "USER"]


def test_the_utterance_is_transcribed_before_its_turn_plays() -> None:
    driver = listening()
    said = tone(1.0, freq=300.0)
    driver.stream_audio(silence(1.0) + said + silence(0.8))
    request = driver.brain.transcription_request
    assert request is not None
    pcm, rate = request
    assert rate == 16000
    # The utterance with a little margin (the VAD's pre-roll), not the silence around it.
    assert len(said) <= len(pcm) <= len(said) + 2 * 16000 * 2 * 0.35
    assert said[16000:48000] in pcm
    # Meanwhile the USER text block is open (the client sees the model busy) and nothing is played.
    assert driver.names() == ["completionStart", "contentStart"]
    assert driver.bodies("contentStart")[0]["role"] == "USER"
    driver.advance(2)
    assert driver.names() == ["completionStart", "contentStart"]

    driver.brain.provide_transcript(" Where's my parcel? ", driver.now)
    driver.pump()
    driver.advance(3)
    assert driver.brain.transcription_request is None
    assert user_texts(driver) == ["Where's my parcel?"]
    assert driver.brain.record.user_turns == ["Where's my parcel?"]
    # One USER block: the one opened while hearing, closed with the text.
    user_blocks = [b for b in driver.bodies("contentStart") if b["role"] == "USER"]
    assert len(user_blocks) == 1
    assert driver.bodies("textOutput")[0]["contentId"] == user_blocks[0]["contentId"]
    assert "You said: Where's my parcel?" in [b["content"] for b in driver.bodies("textOutput")]


def test_nothing_heard_falls_back_to_the_scenario_text() -> None:
    driver = listening()
    driver.stream_audio(tone(0.8) + silence(0.8))
    assert driver.brain.transcription_request is not None
    driver.brain.provide_transcript(None, driver.now)
    driver.pump()
    driver.advance(3)
    assert user_texts(driver) == ["Where is my order 12345?"]


def test_a_second_utterance_waits_for_its_own_transcript() -> None:
    driver = listening()
    first, second = tone(0.6, freq=300.0), tone(1.2, freq=500.0)
    driver.stream_audio(first + silence(0.8) + second + silence(0.8))
    heard_first, _ = driver.brain.transcription_request or (b"", 0)
    assert first[3200:16000] in heard_first and second[3200:16000] not in heard_first
    driver.brain.provide_transcript("one", driver.now)
    driver.pump()
    heard_second, _ = driver.brain.transcription_request or (b"", 0)
    assert second[3200:32000] in heard_second and first[3200:16000] not in heard_second
    driver.brain.provide_transcript("two", driver.now)
    driver.pump()
    driver.advance(6)
    assert driver.brain.record.user_turns == ["one", "two"]


def test_audio_at_another_rate_is_handed_over_at_that_rate() -> None:
    driver = listening(rate=8000)
    driver.stream_audio(tone(0.8, rate=8000) + silence(0.8, rate=8000), rate=8000)
    request = driver.brain.transcription_request
    assert request is not None and request[1] == 8000
    assert 0.8 <= len(request[0]) / 2 / 8000 <= 0.8 + 0.7


def test_the_open_user_block_is_closed_when_the_prompt_ends() -> None:
    driver = listening()
    driver.stream_audio(tone(0.8) + silence(0.8))
    assert driver.brain.transcription_request is not None
    driver.send(content_end("audio"), ev("promptEnd", promptName=PROMPT))
    assert driver.brain.transcription_request is None  # the turn was dropped with the prompt
    opened = driver.bodies("contentStart")[0]["contentId"]
    assert [b["contentId"] for b in driver.bodies("contentEnd")] == [opened]
    assert driver.names()[-1] == "completionEnd"


def test_without_recognition_no_audio_is_kept_and_nothing_is_asked() -> None:
    driver = BrainDriver.make(SCENARIO)
    driver.send(*opening(), audio_start())
    driver.stream_audio(tone(0.8) + silence(0.8))
    assert driver.brain.transcription_request is None
    driver.advance(3)
    assert user_texts(driver) == ["Where is my order 12345?"]
