"""Typed input: lines of text sent to the model as interactive USER text (Nova 2 cross-modal input).

The session stays a voice session underneath (the audio block open, silence streamed, or the
service times it out); the text pump sends each line into the current stream once it streams:
- A person typing (`interrupts`, a terminal) is sent at once. While the assistant speaks, under
  a full-duplex policy that is a barge-in: the runner cuts the answer short itself (playback
  flushed, the rest of that answer dropped until the service echoes the typed line), since the
  service's own barge-in detection listens to audio, not to text. Under a half-duplex policy the
  line waits until the assistant has finished, as the microphone would.
- A script (lines piped on stdin, `interrupts` False) takes turns: each line waits until the
  answer to the previous one is over and has played (or ANSWER_WAIT_S passed without one).
- A typed line is recorded when it is sent (a `user` transcript entry, and the history a new
  stream replays); the service's echo of it is recognised and not recorded again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from runner.conversation.audio import Microphone
from runner.conversation.record import ConversationRecord
from runner.conversation.state import Live
from runner.conversation.taps import Taps
from runner.errors import LocalProtocolError
from runner.policies.base import ConversationPolicy
from runner.protocol.session import EventTooLargeError, SessionState

if TYPE_CHECKING:
    from runner.conversation.events import OutputRouter
    from runner.conversation.link import Link

log = logging.getLogger(__name__)

# How often a waiting line checks whether it may go (a person does not notice 50 ms).
POLL_S = 0.05
# A script's next line waits at most this long for the model to answer the previous one.
ANSWER_WAIT_S = 30.0
QUEUE_LINES = 64


class TextInput(Protocol):
    async def read_line(self) -> str | None:
        """The next line the user typed, or None once the input is finished (for good)."""
        ...


class QueueTextInput:
    """Lines put by a program (a test driver), e.g. `await text.put("Hi")`, then `put(None)`.

    A line is sent when it is put: one put while the assistant speaks interrupts it (under a
    full-duplex policy). A driver that wants turns waits for each answer itself (see EventTap).
    """

    interrupts = True

    def __init__(self, maxsize: int = QUEUE_LINES) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=maxsize)
        self._finished = False

    async def put(self, line: str | None) -> None:
        await self.queue.put(line)

    def put_nowait(self, line: str | None) -> None:
        self.queue.put_nowait(line)

    async def read_line(self) -> str | None:
        if self._finished:
            return None
        line = await self.queue.get()
        self._finished = line is None
        return line


class TextPump:
    """Sends the lines of a TextInput into the current stream (see the module docstring)."""

    def __init__(self, text_input: TextInput, *, policy: ConversationPolicy, mic: Microphone,
                 record: ConversationRecord, router: OutputRouter, live: Live, taps: Taps) -> None:
        self._input = text_input
        self._policy = policy
        self._mic = mic
        self._record = record
        self._router = router
        self._live = live
        self._taps = taps
        self._interrupts = bool(getattr(text_input, "interrupts", True))
        self._ended = False  # the input is finished and every line was sent
        self._sent_at: float | None = None  # when the last line went (its answer awaited)

    @property
    def ended(self) -> bool:
        """The input is finished and every line was sent (its answer may still be awaited)."""
        return self._ended

    def answer_deadline(self) -> float | None:
        """Until when the last line's answer is waited for (None: none is)."""
        return None if self._sent_at is None else self._sent_at + ANSWER_WAIT_S

    @property
    def finished(self) -> bool:
        """Every line was sent and the last one was answered (or waited for long enough)."""
        return self._ended and not self._awaiting_answer()

    async def run(self) -> None:
        while True:
            line = await self._input.read_line()
            if line is None:
                self._ended = True
                self._live.poke()  # the idle exit may count from now
                return
            line = line.strip()
            if not line:
                continue
            await self._send_when_ready(line)

    async def _send_when_ready(self, line: str) -> None:
        """Send `line` into the current link once it streams and it is the line's turn."""
        while True:
            link = self._live.link
            # During a hand-over the session is already the next stream's (the link not yet): the
            # line waits for it, since the old stream is about to close without answering.
            if (link is not None and link.session is self._live.session and link.usable
                    and link.accepted.is_set() and link.session.state is SessionState.STREAMING
                    and self._turn_free(link) and self._send(line, link)):
                return
            await asyncio.sleep(POLL_S)

    def _turn_free(self, link: Link) -> bool:
        if self._interrupts and self._policy.mic_open(True):
            return True  # a person under full duplex: now, even over the assistant
        if self._mic.assistant_speaking():
            return False
        if self._interrupts:
            return True  # half duplex: once the assistant has finished speaking
        return (not self._awaiting_answer() and self._live.tools_running == 0
                and link.session.at_turn_boundary)

    def _awaiting_answer(self) -> bool:
        sent = self._sent_at
        if sent is None:
            return False
        answered = self._live.last_answer_at
        if (answered is not None and answered >= sent) or self._live.clock() - sent >= ANSWER_WAIT_S:
            self._sent_at = None
            return False
        return True

    def _send(self, line: str, link: Link) -> bool:
        """Send `line` to `link`; False when the link stopped taking text meanwhile."""
        barge_in = self._live.link is link and (self._mic.assistant_speaking()
                                               or link.session.assistant_answering)
        try:
            link.session.send_text(line)
        except EventTooLargeError as exc:  # a textInput template that inflates every piece
            self._live.request_stop(str(exc), code=1, graceful=False, error=True)
            return True
        except LocalProtocolError as exc:  # the session is ending (a rotation): the next takes it
            log.debug("typed line not sent yet: %s", exc)
            return False
        if barge_in and self._policy.mic_open(True):
            self._router.cut_answer(link, line)
        self._record.said_by_user(line)
        self._sent_at = self._live.clock()
        self._live.touch()
        self._taps.sent("user_text", text=line)
        link.kick()
        return True
