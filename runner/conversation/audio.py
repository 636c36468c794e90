"""The microphone and player pumps.

- mic:    policy gate -> source.read() (paced; silence while muted) -> current session. A muted
          file source holds its place instead of playing into the closed gate, so under the
          half-duplex policy a recorded question waits for the assistant (its greeting included:
          the gate stays closed from the greeting's sending until its answer has played).
- player: Play actions pass through a bounded queue to the sink, so a full sink never stalls the
          reader: an interruption must be seen at once, not after seconds of queued audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from runner.audio.base import AudioSink, AudioSource
from runner.conversation.state import Live
from runner.errors import LocalProtocolError, RunnerError
from runner.policies.base import ConversationPolicy
from runner.protocol.handover import HandoverGate
from runner.protocol.session import EventTooLargeError, Session

log = logging.getLogger(__name__)

PLAY_QUEUE_CHUNKS = 4096  # minutes of Nova's audioOutput chunks: bounded, never reached in practice
# Audio the service has not yet confirmed hearing (no USER transcript since) is kept, up to this
# much, and replayed into the next stream after a failure (AWS's continuation sample keeps 3 s).
UNHEARD_AUDIO_S = 10.0
# The longest the mic gate counts a greeting as still being answered when no answer comes.
GREETING_WAIT_S = 15.0
# How long a session that is finishing stays drained into the sink before closing.
DRAIN_LIMIT_S = 30.0


class Player:
    """The assistant's audio on its way to the sink."""

    def __init__(self, sink: AudioSink, live: Live) -> None:
        self.sink = sink
        self._live = live
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=PLAY_QUEUE_CHUNKS)

    async def play(self, pcm: bytes) -> None:
        # Blocks only with minutes of audio queued: backpressure, not loss.
        await self._queue.put(pcm)

    def flush(self) -> int:
        """Barge-in: drop everything not yet heard; returns the bytes dropped."""
        dropped = 0
        while not self._queue.empty():
            dropped += len(self._queue.get_nowait())
        return dropped + self.sink.flush()

    @property
    def pending(self) -> bool:
        """Assistant audio is queued or playing."""
        return self.sink.pending_ms() > 0 or not self._queue.empty()

    async def drain(self) -> None:
        """Let the last words play before the run ends (unless the output broke)."""
        if self.sink.failure() is None:
            with contextlib.suppress(RunnerError):  # the output broke meanwhile: run() reports it
                await self.sink.wait_drained(DRAIN_LIMIT_S)

    async def run(self) -> None:
        while True:
            pcm = await self._queue.get()
            try:
                await self.sink.write(pcm)
            except RunnerError as exc:  # the output broke (a full disk, a stalled device)
                self._live.request_stop(str(exc), code=1, graceful=False, error=True)
                return


class Microphone:
    """The user's audio on its way to the current session."""

    def __init__(self, source: AudioSource, policy: ConversationPolicy, player: Player,
                 handover: HandoverGate, live: Live, on_sent: Callable[[bytes], None]) -> None:
        self.source = source
        self._policy = policy
        self._player = player
        self._handover = handover
        self._live = live
        self._on_sent = on_sent  # every chunk that went to a session
        self._unheard: deque[bytes] = deque()
        self._unheard_bytes = 0
        self._unheard_limit = int(UNHEARD_AUDIO_S * 2 * source.fmt.sample_rate)
        # Until the greeting's answer ends (or GREETING_WAIT_S pass) the assistant counts as
        # speaking for the mic gate.
        self._greeting_until: float | None = None

    def greeting_sent(self) -> None:
        self._greeting_until = self._live.clock() + GREETING_WAIT_S

    def answer_over(self) -> None:
        """An answer ended (END_TURN or INTERRUPTED): the first one answered the greeting, if any."""
        self._greeting_until = None

    def assistant_speaking(self) -> bool:
        """Assistant audio is queued or playing, or the greeting's answer is still to come."""
        until = self._greeting_until
        if until is not None:
            if self._live.clock() < until:
                return True
            self._greeting_until = None
        return self._player.pending

    def heard(self) -> None:
        """The service transcribed what the user said: nothing unheard to replay any more."""
        self._unheard.clear()
        self._unheard_bytes = 0

    def replay_unheard(self, session: Session) -> None:
        """What the user said to a failed stream and was never transcribed is said again."""
        for pcm in self._unheard:
            session.send_audio(pcm)

    async def run(self) -> None:
        # Nothing is read before there is a session to send it to: a file's first chunk would
        # otherwise be read and dropped.
        await self._live.first_session.wait()
        while True:  # ends when the TaskGroup is cancelled
            # Decided before reading: a muted file source keeps its place (nothing is lost), a
            # live one captures and drops, as a half-duplex line would.
            mic_open = self._policy.mic_open(self.assistant_speaking())
            self.source.mute(not mic_open)
            chunk = await self.source.read()
            if not mic_open:
                chunk = bytes(len(chunk))
            self._handover.heard(chunk, self._live.clock())
            session = self._live.session
            if session is None or self._live.stopping:
                continue
            try:
                session.send_audio(chunk)
            except EventTooLargeError as exc:  # an audioInput template that inflates every frame
                self._live.request_stop(str(exc), code=1, graceful=False, error=True)
                continue
            except LocalProtocolError:
                continue  # the session is ending; its successor takes the next chunk
            self._remember_unheard(chunk)
            self._on_sent(chunk)
            link = self._live.link
            if link is not None and link.session is session:
                link.kick()

    def _remember_unheard(self, chunk: bytes) -> None:
        self._unheard.append(chunk)
        self._unheard_bytes += len(chunk)
        while self._unheard_bytes > self._unheard_limit:
            self._unheard_bytes -= len(self._unheard.popleft())
