"""Stream supervision: open a stream, rotate it, reconnect after a failure, close it in order.

- Proactively, once a stream is older than `rotate_after_s` (or the credentials are about to
  expire) and at a turn boundary (nothing answering, no tool pending), the supervisor hands over:
  the new Session is created first and the microphone switches to it at once (its audio is held
  back in order until the new audio block opens, so nothing the user says is dropped), then the
  old link is closed in the documented order.
- Reactively, after a retryable stream error it reconnects the same way with bounded exponential
  backoff; a non-retryable error (validation, access denied) ends the run with the service's
  message.
- The audio block of a new stream opens only once the service accepted the request (HTTP 200),
  so a throttled or refused attempt loses no audio: it stays held for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from runner.console import Console
from runner.conversation.audio import Microphone, Player
from runner.conversation.events import OutputRouter
from runner.conversation.link import DeadStream, Link, read_pump, write_pump
from runner.conversation.record import ConversationRecord
from runner.conversation.state import Live, Stopped
from runner.errors import LocalProtocolError, TransportError
from runner.protocol.handover import HandoverGate
from runner.protocol.session import Session, SessionState
from runner.protocol.setup import HistoryMessage
from runner.transcript import Transcript
from runner.transports.base import Connector

WRITER_DRAIN_S = 0.5
CLOSE_INPUT_S = 0.7
READER_FINISH_S = 0.5
ACCEPT_TIMEOUT_S = 10.0
# Reconnect backoff: first retry almost at once, then doubling, capped; give up after this many
# consecutive failed attempts (a link that served a turn resets the count).
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 8.0
MAX_CONSECUTIVE_FAILURES = 6
# Rotate this long before temporary credentials expire (livekit recycles 3 min before expiry).
CREDENTIALS_MARGIN_S = 180.0
# While a rotation is due but the conversation is mid-turn, how often to look for its boundary.
ROTATION_POLL_S = 0.1

SessionFactory = Callable[[tuple[HistoryMessage, ...], bool], Session]


class Supervisor:
    def __init__(self, *, connector: Connector, model_id: str, nova2: bool, new_session: SessionFactory,
                 rotate_after_s: float, labels: Mapping[str, str], record: ConversationRecord,
                 mic: Microphone, player: Player, router: OutputRouter, handover: HandoverGate,
                 transcript: Transcript, console: Console, live: Live,
                 tick: Callable[[float], None], sent_trace: Callable[[bytes], None] | None,
                 wall_clock: Callable[[], float],
                 next_due: Callable[[float], float | None] = lambda now: None) -> None:
        self._connector = connector
        self._model_id = model_id
        self._nova2 = nova2
        self._new_session = new_session
        self._rotate_after_s = rotate_after_s
        self._labels = dict(labels)  # e.g. agent and policy, repeated on each stream's start
        self._record = record
        self._mic = mic
        self._player = player
        self._router = router
        self._handover = handover
        self._transcript = transcript
        self._console = console
        self._live = live
        # The conversation's own stop checks, run at each wake-up of `_watch`; `next_due(now)` says
        # when they next need to run (None: only when poked).
        self._tick = tick
        self._next_due = next_due
        self._sent_trace = sent_trace
        self._wall_clock = wall_clock
        self.links_opened = 0
        self._accepted_once = False  # some stream was accepted (HTTP 200): the endpoint is reachable
        self._stale_expiry: datetime | None = None
        self.audio_bytes_sent = 0
        self.audio_bytes_dropped = 0

    async def run(self) -> None:
        """Open, watch, rotate and reconnect streams until a stop is requested (raises Stopped)
        or a stream fails in a way reconnecting cannot fix (raises TransportError)."""
        reason = "start"
        failures = 0
        after_failure = False
        while True:
            link = await self._open_link(reason, failures, after_failure=after_failure)
            if link is None:  # stop requested while connecting
                raise Stopped
            outcome = await self._watch(link)
            if outcome == "stop":
                assert self._live.stop is not None
                await self.close_link(link, self._live.stop.reason, graceful=self._live.stop.graceful)
                raise Stopped
            if outcome in ("rotate", "rotate-credentials"):
                reason, failures, after_failure = "rotation", 0, False
                if outcome == "rotate-credentials":
                    reason = await self._refresh_credentials()
                self._live.spawn(self.close_link(link, "rotated to a new stream"), name=f"close:{link.index}")
                continue
            assert isinstance(outcome, TransportError)
            failures = 0 if link.served_turn else failures + 1
            await self.close_link(link, str(outcome), error=outcome.kind)
            if not outcome.retryable:
                raise outcome
            endpoint = self._connector.info.endpoint
            if outcome.kind == "EndpointUnreachable" and not self._accepted_once:
                # Nothing was ever reached there: retrying only delays the error (issue 13).
                raise TransportError(f"cannot reach {endpoint}: {outcome}", kind=outcome.kind)
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise TransportError(f"gave up after {failures} failed attempts to reach {endpoint}; "
                                     f"last error: {outcome}", kind=outcome.kind)
            reason, after_failure = f"reconnect after {outcome.kind}", True
            self._console.warning(f"stream {link.index} failed ({outcome}); reconnecting")

    async def _open_link(self, reason: str, failures: int, *, after_failure: bool) -> Link | None:
        """Create the next session (the mic switches to it now), then connect with backoff."""
        history, replay = self._record.history_for_next_stream(self._nova2)
        session = self._new_session(history, self.links_opened == 0)
        if self.links_opened == 0 and session.setup.greeting and self._nova2:
            self._record.greeting_echo = session.setup.greeting
            self._mic.greeting_sent()
        session.start(open_audio=False)
        if after_failure:
            self._mic.replay_unheard(session)
        self._live.session = session
        self._live.first_session.set()
        if failures:
            delay = min(BACKOFF_FIRST_S * 2 ** (failures - 1), BACKOFF_MAX_S)
            if await self._live.stop_within(delay):
                return None
        try:
            stream = await self._connector.open_stream(self._model_id)
        except TransportError as exc:
            link = Link(self.links_opened + 1, session, DeadStream(), self._live.clock(), reason,
                        on_done=self._live.poke)
            self.links_opened += 1
            link.fail(exc)
            self._live.link = link
            return link
        self.links_opened += 1
        link = Link(self.links_opened, session, stream, self._live.clock(), reason, on_done=self._live.poke)
        self._live.link = link
        reader = read_pump(link, accepted=self._accepted, on_event=self._router.on_event)
        link.tasks = [self._live.spawn(write_pump(link, self._sent_trace), name=f"writer:{link.index}"),
                      self._live.spawn(reader, name=f"reader:{link.index}")]
        link.kick()
        self._transcript.write("session", event="start", stream=link.index, reason=reason,
                               model=self._model_id, region=self._connector.info.region,
                               endpoint=self._connector.info.endpoint, history_messages=len(history),
                               **self._labels)
        if link.index > 1:
            self._console.info(f"  [stream {link.index} opened: {reason}; {len(history)} history messages]")
        self._live.spawn(self._open_audio_when_accepted(link, replay), name=f"accept:{link.index}")
        return link

    def _accepted(self) -> None:
        self._accepted_once = True

    async def _open_audio_when_accepted(self, link: Link, replay: str | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACCEPT_TIMEOUT_S):
                await _first_of(link.accepted, link.done)
        if not link.accepted.is_set() or link.done.is_set() or link.closing:
            return
        link.session.open_audio()
        if replay is not None:
            self._record.expect_echo(replay, add_to_history=False)
            link.session.send_text(replay)
        link.kick()

    async def _watch(self, link: Link) -> str | TransportError:
        """Wait until the link must stop, rotate, or has failed.

        It sleeps until the next deadline that is due (rotation, and the conversation's own:
        `next_due`), or until poked (`Live.poke`: a stop request, the link done, anything that
        brings a deadline nearer). An idle conversation wakes nothing here (the loop's wake-ups
        are what a session's CPU goes to), and no task is created per wake-up.
        """
        while True:
            self._live.changed.clear()  # before the checks: a poke from here on is seen
            if self._live.stopping:
                return "stop"
            if link.done.is_set():
                return link.failure or TransportError(
                    "the service closed the stream unexpectedly", kind="StreamReset", retryable=True)
            now = self._live.clock()
            self._tick(now)
            rotation = self._rotation_due(link, now)
            if rotation is not None:
                return rotation
            await self._live.wait_changed(_earliest(self._next_due(now), self._next_rotation(link, now)))

    def _next_rotation(self, link: Link, now: float) -> float:
        """When to look at rotating next: the stream's age limit or the credentials' margin, then
        (due but not at a turn boundary yet) every ROTATION_POLL_S."""
        at = link.started_at + self._rotate_after_s
        expiry = self._connector.info.credentials_expiry
        if expiry is not None and expiry != self._stale_expiry:
            at = min(at, now + expiry.timestamp() - CREDENTIALS_MARGIN_S - self._wall_clock())
        return max(at, now + ROTATION_POLL_S)

    def _rotation_due(self, link: Link, now: float) -> str | None:
        """"rotate", "rotate-credentials" or None."""
        aged = now - link.started_at >= self._rotate_after_s
        expiring = self._credentials_expiring()
        if not (aged or expiring) or not link.accepted.is_set() or self._live.tools_running:
            return None
        if link.session.state is not SessionState.STREAMING:
            return None
        if not self._handover.open(now, at_turn_boundary=link.session.at_turn_boundary):
            return None
        return "rotate-credentials" if expiring else "rotate"

    def _credentials_expiring(self) -> bool:
        expiry = self._connector.info.credentials_expiry
        if expiry is None or expiry == self._stale_expiry:
            return False
        return expiry.timestamp() - self._wall_clock() < CREDENTIALS_MARGIN_S

    async def _refresh_credentials(self) -> str:
        """Fresh credentials for the next stream; returns the rotation reason for the transcript."""
        old = self._connector.info.credentials_expiry
        await self._connector.refresh_credentials()
        new = self._connector.info.credentials_expiry
        if new is not None and new == old:
            # The credential source handed back the same keys: rotating again cannot help.
            self._stale_expiry = new
            self._console.warning(f"AWS credentials expire at {new:%H:%M:%S} and the credential source "
                                  "gives no newer ones; the stream will fail then")
        return f"rotation (credentials expire at {old:%H:%M:%S})" if old else "rotation"

    async def close_link(self, link: Link, reason: str, *, graceful: bool = True,
                         error: str | None = None) -> None:
        """End the link's session in the documented order, bounded in time."""
        if link.closing:
            return
        link.closing = True
        if link.failure is None:
            with contextlib.suppress(LocalProtocolError):
                link.session.end()
            link.kick()
            await _within(link.writer_idle.wait(), WRITER_DRAIN_S)
            await link.stream.close_input(CLOSE_INPUT_S)
            await _within(link.done.wait(), READER_FINISH_S)
        for task in link.tasks:
            task.cancel()
        await _within(asyncio.gather(*link.tasks, return_exceptions=True), READER_FINISH_S)
        await link.stream.aclose()
        self._record.write_usage()  # the final usageEvent arrives after END_TURN: record it before the end
        stats = link.session.statistics()
        self.audio_bytes_sent += stats.audio_bytes_sent
        self.audio_bytes_dropped += stats.audio_bytes_dropped
        entry: dict[str, Any] = {"event": "end", "stream": link.index, "reason": reason}
        if error is not None:
            entry["error"] = error
        self._transcript.write("session", **entry)
        if link is self._live.link and self._live.stop is not None and graceful:
            await self._player.drain()


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


async def _within(awaitable: Any, limit_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            await awaitable
