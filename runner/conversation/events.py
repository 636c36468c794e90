"""Output events: recorded (history, transcript, console), then turned into actions by the policy.

The policy decides what an event means for the user (play this audio, flush playback, the answer
was interrupted, call a tool); this module carries the actions out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from runner.console import Console
from runner.conversation.audio import Microphone, Player
from runner.conversation.link import Link
from runner.conversation.record import ConversationRecord
from runner.conversation.state import Live
from runner.conversation.tools import ToolCalls
from runner.policies.base import Action, CallTool, ConversationPolicy, FlushPlayback, MarkInterrupted, Play
from runner.protocol.events import ContentEnd, ContentStart, OutputEvent, UnknownEvent
from runner.protocol.handover import HandoverGate
from runner.transcript import Transcript

log = logging.getLogger(__name__)


class OutputRouter:
    def __init__(self, *, policy: ConversationPolicy, record: ConversationRecord, player: Player,
                 mic: Microphone, tools: ToolCalls, handover: HandoverGate, transcript: Transcript,
                 console: Console, live: Live, trace: Callable[[OutputEvent], None]) -> None:
        self._policy = policy
        self._record = record
        self._player = player
        self._mic = mic
        self._tools = tools
        self._handover = handover
        self._transcript = transcript
        self._console = console
        self._live = live
        self._trace = trace

    async def on_event(self, link: Link, event: OutputEvent) -> None:
        self._live.touch()
        self._trace(event)
        if self._record.feed(event):
            self._mic.heard()
        if isinstance(event, ContentEnd) and event.stop_reason in ("END_TURN", "INTERRUPTED"):
            self._mic.answer_over()
        match event:
            case ContentStart(role=role) if event.type.value == "AUDIO":
                self._console.status(f"{role.value.lower()} speaking")
            case ContentEnd(stop_reason="END_TURN"):
                link.served_turn = True
                self._handover.answered(self._live.clock())
                self._record.write_usage()
                self._console.status("listening")
            case UnknownEvent():
                log.info("ignoring unknown output event %s", event.name)
            case _:
                pass
        for action in self._policy.on_event(event):
            await self._apply(link, action)

    async def _apply(self, link: Link, action: Action) -> None:
        match action:
            case Play(pcm=pcm):
                await self._player.play(pcm)
            case FlushPlayback():
                log.debug("barge-in: dropped %d bytes of assistant audio", self._player.flush())
            case MarkInterrupted(content_id=content_id):
                self._transcript.write("interrupted", content_id=content_id)
                self._console.interrupted()
            case CallTool():
                self._tools.start(link, action)
