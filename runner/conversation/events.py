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
from runner.conversation.taps import Taps
from runner.conversation.tools import ToolCalls
from runner.policies.base import Action, CallTool, ConversationPolicy, FlushPlayback, MarkInterrupted, Play
from runner.protocol.events import ContentEnd, ContentStart, ContentType, OutputEvent, Role, UnknownEvent
from runner.protocol.handover import HandoverGate
from runner.transcript import Transcript

log = logging.getLogger(__name__)

# A typed barge-in drops the interrupted answer's audio until the typed line's echo, at most this long.
CUT_LIMIT_S = 30.0


class OutputRouter:
    def __init__(self, *, policy: ConversationPolicy, record: ConversationRecord, player: Player,
                 mic: Microphone, tools: ToolCalls, handover: HandoverGate, transcript: Transcript,
                 console: Console, live: Live, trace: Callable[[OutputEvent], None], taps: Taps) -> None:
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
        self._taps = taps
        self._last_played: str | None = None  # the content id of the last audio queued to play
        # A typed barge-in (text.py): the typed line whose echo ends the cut, and since when.
        self._cut_until_echo: str | None = None
        self._cut_since = 0.0

    async def on_event(self, link: Link, event: OutputEvent) -> None:
        self._live.touch()
        self._trace(event)
        self._taps.output(event)
        heard = self._record.feed(event)
        if heard is not None:
            self._taps.heard(heard.kind)
        if heard is not None and heard.kind == "user":
            self._mic.heard()
        elif heard is not None and heard.kind == "echo" and heard.text == self._cut_until_echo:
            self._cut_until_echo = None  # what follows answers the typed line
        if isinstance(event, ContentEnd) and event.stop_reason in ("END_TURN", "INTERRUPTED"):
            self._mic.answer_over()
            self._live.last_answer_at = self._live.clock()
            self._live.poke()  # deadlines that count from an answer (turn close, idle exit, call control)
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

    def cut_answer(self, link: Link, typed: str) -> None:
        """The user typed over the assistant: its answer ends here, as a spoken barge-in would end it.

        The service may go on with that answer (its barge-in detection hears audio, not text):
        the rest of it is dropped until the echo of the typed line, after which comes its answer.
        """
        dropped = self._player.flush()
        self._taps.flushed(dropped)
        log.debug("typed barge-in: dropped %d bytes of assistant audio", dropped)
        if self._cutting:
            return
        self._cut_until_echo, self._cut_since = typed, self._live.clock()
        speaking = [block.content_id for block in link.session.open_output_blocks
                    if block.role is Role.ASSISTANT and block.type is ContentType.AUDIO]
        content_id = speaking[-1] if speaking else self._last_played
        if content_id is not None:
            self._transcript.write("interrupted", content_id=content_id)
        self._console.interrupted()

    @property
    def _cutting(self) -> bool:
        if self._cut_until_echo is not None and self._live.clock() - self._cut_since >= CUT_LIMIT_S:
            self._cut_until_echo = None  # no echo came: never mute the assistant for good
        return self._cut_until_echo is not None

    async def _apply(self, link: Link, action: Action) -> None:
        match action:
            case Play(content_id=content_id, pcm=pcm):
                if self._cutting:
                    return
                self._last_played = content_id
                self._taps.queued(len(pcm))
                await self._player.play(pcm)
            case FlushPlayback():
                dropped = self._player.flush()
                self._taps.flushed(dropped)
                log.debug("barge-in: dropped %d bytes of assistant audio", dropped)
            case MarkInterrupted(content_id=content_id):
                if self._cutting:
                    return  # the service's own signal for the answer the typed line already cut
                self._transcript.write("interrupted", content_id=content_id)
                self._console.interrupted()
            case CallTool():
                self._tools.start(link, action)
