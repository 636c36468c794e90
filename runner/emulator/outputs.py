"""Builds Nova Sonic output events with the ids and shapes of nova-sonic-protocol.md §3 (sans-IO).

Every event carries sessionId, promptName and completionId; content events add contentId.
`additionalModelFields` is a JSON *string*, as the service sends it. Usage totals are cumulative
for the stream and each usageEvent also carries its delta.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]

INTERRUPTED_MARKER = '{ "interrupted" : true }'
TEXT_CONFIG = {"mediaType": "text/plain"}


def audio_config(rate: int) -> dict[str, Any]:
    return {"mediaType": "audio/lpcm", "sampleRateHertz": rate, "sampleSizeBits": 16,
            "channelCount": 1, "encoding": "base64", "audioType": "SPEECH"}


@dataclass(frozen=True, slots=True)
class Tokens:
    input_speech: int = 0
    input_text: int = 0
    output_speech: int = 0
    output_text: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.input_speech + other.input_speech, self.input_text + other.input_text,
                      self.output_speech + other.output_speech, self.output_text + other.output_text)

    def details(self) -> dict[str, Any]:
        return {"input": {"speechTokens": self.input_speech, "textTokens": self.input_text},
                "output": {"speechTokens": self.output_speech, "textTokens": self.output_text}}


def text_tokens(text: str) -> int:
    """A plausible token count for `text` (about 4 characters per token)."""
    return max(1, round(len(text) / 4))


def speech_tokens(seconds: float) -> int:
    """A plausible token count for `seconds` of speech (about 25 per second)."""
    return max(1, round(seconds * 25))


class OutputEvents:
    """Output event factory for one stream; ids come from the injected `new_id`."""

    def __init__(self, *, prompt_name: str, new_id: Callable[[], str]) -> None:
        self.new_id = new_id
        self.session_id = new_id()
        self.prompt_name = prompt_name
        self.completion_id = new_id()
        self.usage_total = Tokens()

    def _ids(self, content_id: str | None = None) -> dict[str, Any]:
        ids = {"sessionId": self.session_id, "promptName": self.prompt_name,
               "completionId": self.completion_id}
        if content_id is not None:
            ids["contentId"] = content_id
        return ids

    def completion_start(self) -> Event:
        return {"event": {"completionStart": self._ids()}}

    def completion_end(self, stop_reason: str = "END_TURN") -> Event:
        return {"event": {"completionEnd": {**self._ids(), "stopReason": stop_reason}}}

    def text_start(self, content_id: str, role: str, stage: str) -> Event:
        return {"event": {"contentStart": {
            **self._ids(content_id), "type": "TEXT", "role": role,
            "additionalModelFields": json.dumps({"generationStage": stage}),
            "textOutputConfiguration": TEXT_CONFIG}}}

    def audio_start(self, content_id: str, rate: int) -> Event:
        return {"event": {"contentStart": {
            **self._ids(content_id), "type": "AUDIO", "role": "ASSISTANT",
            "audioOutputConfiguration": audio_config(rate)}}}

    def tool_start(self, content_id: str) -> Event:
        return {"event": {"contentStart": {
            **self._ids(content_id), "type": "TOOL", "role": "TOOL",
            "toolUseOutputConfiguration": {"mediaType": "application/json"}}}}

    def text_output(self, content_id: str, role: str, content: str) -> Event:
        return {"event": {"textOutput": {**self._ids(content_id), "role": role, "content": content}}}

    def audio_output(self, content_id: str, content_b64: str) -> Event:
        return {"event": {"audioOutput": {**self._ids(content_id), "role": "ASSISTANT",
                                          "content": content_b64}}}

    def tool_use(self, content_id: str, name: str, tool_use_id: str, content: str) -> Event:
        return {"event": {"toolUse": {**self._ids(content_id), "role": "TOOL", "toolName": name,
                                      "toolUseId": tool_use_id, "content": content}}}

    def content_end(self, content_id: str, kind: str, stop_reason: str) -> Event:
        return {"event": {"contentEnd": {**self._ids(content_id), "type": kind,
                                         "stopReason": stop_reason}}}

    def usage(self, delta: Tokens) -> Event:
        self.usage_total = self.usage_total + delta
        total = self.usage_total
        inputs = total.input_speech + total.input_text
        outputs = total.output_speech + total.output_text
        return {"event": {"usageEvent": {
            **self._ids(), "details": {"delta": delta.details(), "total": total.details()},
            "totalInputTokens": inputs, "totalOutputTokens": outputs,
            "totalTokens": inputs + outputs}}}
