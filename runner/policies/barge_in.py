"""`barge-in`: full duplex; the user can interrupt the assistant.

Theory of operation: the microphone is always open and Nova detects barge-in on the server. It
signals it in two forms, a `{ "interrupted" : true }` textOutput and/or a contentEnd with
stopReason INTERRUPTED, in either order (nova-sonic-protocol.md §3.1). The policy acts on whichever
comes first, once per answer: FlushPlayback (audio arrives faster than real time, so much of the
answer is still queued) and MarkInterrupted. Audio of the interrupted answer that still arrives
afterwards is dropped. A new answer starts with the next ASSISTANT AUDIO or SPECULATIVE text
block (FINAL text describes audio already sent, so it does not start one).
"""

from __future__ import annotations

from runner.policies.base import Action, CallTool, FlushPlayback, MarkInterrupted, Play
from runner.protocol.events import (
    AudioOutput,
    ContentEnd,
    ContentStart,
    ContentType,
    GenerationStage,
    OutputEvent,
    Role,
    StopReason,
    TextOutput,
    ToolUse,
)


class BargeInPolicy:
    name = "barge-in"

    def __init__(self) -> None:
        self._interrupted = False
        # Content ids of the current answer and of every interrupted answer.
        self._answer: set[str] = set()
        self._dropped: set[str] = set()

    def on_event(self, event: OutputEvent) -> list[Action]:
        match event:
            case AudioOutput():
                if self._interrupted or event.content_id in self._dropped:
                    return []
                return [Play(event.content_id, event.pcm)]
            case ToolUse():
                return [CallTool(event.tool_name, event.tool_use_id, event.arguments)]
            case ContentStart() if event.role is Role.ASSISTANT:
                self._track(event)
            case TextOutput() if event.is_interruption:
                return self._interrupt(event.content_id)
            case ContentEnd() if event.stop_reason == StopReason.INTERRUPTED:
                return self._interrupt(event.content_id)
            case _:
                pass
        return []

    def _track(self, event: ContentStart) -> None:
        if self._interrupted and _starts_answer_part(event):
            self._interrupted, self._answer = False, set()
        self._answer.add(event.content_id)
        if self._interrupted:  # e.g. the FINAL text of the interrupted answer
            self._dropped.add(event.content_id)

    def _interrupt(self, content_id: str) -> list[Action]:
        # The second signal of the same interruption (either form, either order) changes nothing,
        # even when it arrives after the next answer has begun.
        if self._interrupted or content_id in self._dropped:
            self._dropped.add(content_id)
            return []
        self._interrupted = True
        self._dropped |= self._answer | {content_id}
        return [FlushPlayback(), MarkInterrupted(content_id)]

    def mic_open(self, assistant_audio_pending: bool) -> bool:
        return True


def _starts_answer_part(event: ContentStart) -> bool:
    return event.type is ContentType.AUDIO or event.generation_stage == GenerationStage.SPECULATIVE
