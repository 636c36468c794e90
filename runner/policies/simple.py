"""`simple`: half-duplex, as the seed's simple script.

Theory of operation: the user cannot interrupt. While assistant audio is queued or playing the
microphone sends silence, so the server hears nothing to barge in on; every audio chunk is played,
and interruption signals (which should then not occur) change nothing: no flush.
"""

from __future__ import annotations

from runner.policies.base import Action, CallTool, Play
from runner.protocol.events import AudioOutput, OutputEvent, ToolUse


class SimplePolicy:
    name = "simple"

    def on_event(self, event: OutputEvent) -> list[Action]:
        match event:
            case AudioOutput():
                return [Play(event.content_id, event.pcm)]
            case ToolUse():
                return [CallTool(event.tool_name, event.tool_use_id, event.arguments)]
            case _:
                return []

    def mic_open(self, assistant_audio_pending: bool) -> bool:
        return not assistant_audio_pending
