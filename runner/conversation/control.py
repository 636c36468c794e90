"""Call control: the conversation ends on purpose, after the last words have been heard.

Three ways, each recorded as a `call_ended` transcript entry with its reason and exit code 0:
- `end_call` (the built-in tool, runner.tools.builtins): the model said goodbye and calls it.
  The call ends once what the assistant still says has been played: its answer to the tool result
  ended (END_TURN) or nothing came for END_CALL_SETTLE_S, and the player drained; at most
  CLOSING_LIMIT_S after the call.
- `session.inactivity`: after `nudge_after_s` of quiet (no user speech, no typed text, the
  assistant not speaking, no tool running) the nudge goes to the model as interactive USER text so
  it speaks; after `end_after_s` more quiet the goodbye goes the same way, is answered and played,
  and the call ends. The user speaking (or typing) after the nudge starts the count over. On a model
  without text input (v1) nothing can be said: the call ends after both delays.
- `session.max_duration_s`: the closing line is said the same way, then the call ends.
A `transfer` that Twilio accepted ends the call too (reason "transfer"): the call has left the stream.

The decisions are a sans-IO state machine (`CallClock`, fed the time and what it needs to know,
returning actions), tested synchronously; `CallControl` is its glue to the running conversation:
an EventTap that notes user speech, typed text and answers, and a `tick` the supervisor calls
that carries the actions out. The supervisor sleeps until `next_due` (CallClock's next deadline,
or every STEP_S while something is busy or the call is closing); the tap and the tool calls wake
it when that deadline moves nearer. Tools reach it through `current_call()`, a context
variable every task of the conversation inherits.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from runner.config.model import DEFAULT_CLOSING_LINE, InactivityConfig, SessionConfig
from runner.errors import LocalProtocolError
from runner.protocol.events import OutputEvent
from runner.protocol.session import EventTooLargeError, SessionState

if TYPE_CHECKING:
    from runner.console import Console
    from runner.conversation.audio import Player
    from runner.conversation.record import ConversationRecord
    from runner.conversation.state import Live
    from runner.transcript import Transcript

log = logging.getLogger(__name__)

EndReason = Literal["end_call", "inactivity", "max_duration", "transfer"]
END_REASONS: tuple[str, ...] = ("end_call", "inactivity", "max_duration", "transfer")

# After end_call: the model's answer to the tool result may take a moment to start; this much
# quiet (nothing received, nothing playing) means it has nothing more to say.
END_CALL_SETTLE_S = 2.0
# After a goodbye or closing line sent as text: how long its answer may take to begin.
ANSWER_SETTLE_S = 6.0
# Whatever happens, a closing call ends this long after it began closing.
CLOSING_LIMIT_S = 20.0
# How long `transfer` waits for the words before it ("I am transferring you") to be played.
PLAYED_WAIT_S = 8.0
POLL_S = 0.05
# While the user or the assistant is busy (inactivity counts from the end of it), or the call is
# closing, CallClock is stepped this often.
STEP_S = 0.1


@dataclass(frozen=True, slots=True)
class PhoneCall:
    """The telephone call a conversation is on (set by a phone front end), for `transfer`."""

    provider: str  # "twilio"
    call_sid: str
    account_sid: str = ""


@dataclass(frozen=True, slots=True)
class CallControlOptions:
    inactivity: InactivityConfig | None = None
    max_duration_s: float | None = None
    closing_line: str = DEFAULT_CLOSING_LINE
    speaks_text: bool = True  # Nova 2: texts can be said (interactive USER text)
    closing_limit_s: float = CLOSING_LIMIT_S

    @property
    def watches_user(self) -> bool:
        """Whether the user's speech and typing must be followed (only inactivity needs them)."""
        return self.inactivity is not None


def options_for(session: SessionConfig) -> CallControlOptions:
    """The call control an agent's `session:` settings ask for."""
    return CallControlOptions(inactivity=session.inactivity, max_duration_s=session.max_duration_s,
                              closing_line=session.closing_line)


# -- the sans-IO core -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Say:
    """Send `text` to the model as interactive USER text (it answers it aloud)."""

    text: str
    kind: Literal["nudge", "goodbye", "closing"]


@dataclass(frozen=True, slots=True)
class End:
    reason: EndReason


Action = Say | End


@dataclass(frozen=True, slots=True)
class Activity:
    """What CallClock needs to know at a step: the latest times (conversation clock) of each kind."""

    user_at: float  # the user last spoke (a loud microphone chunk) or typed a line
    output_at: float  # the last thing received from the model, or a tool result
    answered_at: float | None  # the last END_TURN or INTERRUPTED
    busy: bool  # assistant audio queued or playing, a tool running, the user speaking


class CallClock:
    """When to nudge, say goodbye and end (see the module docstring)."""

    def __init__(self, options: CallControlOptions, started_at: float) -> None:
        self.options = options
        self._started_at = started_at
        self._phase: Literal["open", "nudged", "closing", "ended"] = "open"
        self._nudged_at = 0.0
        self._busy_until = started_at  # the last step at which something was busy
        self._reason: EndReason | None = None
        self._closing_since = 0.0
        self._settle_s = 0.0

    @property
    def closing(self) -> EndReason | None:
        """Why the call is ending, once it is."""
        return self._reason

    def end(self, reason: EndReason, now: float, *, settle_s: float = END_CALL_SETTLE_S) -> None:
        """End the call once the assistant has finished (end_call, transfer); the first reason wins."""
        if self._reason is None:
            self._begin_closing(reason, now, settle_s)

    def step(self, now: float, activity: Activity) -> list[Action]:
        if self._phase == "ended":
            return []
        if activity.busy:
            self._busy_until = now
        if self._phase == "closing":
            return self._closing_step(now, activity)
        limit = self.options.max_duration_s
        if limit is not None and now - self._started_at >= limit:
            return self._close("max_duration", now, Say(self.options.closing_line, "closing"), activity)
        inactivity = self.options.inactivity
        if inactivity is None:
            return []
        quiet_since = max(activity.user_at, activity.output_at, self._busy_until)
        quiet_s = now - quiet_since
        if self._phase == "nudged" and activity.user_at > self._nudged_at:
            self._phase = "open"  # the user is back
        if self._phase == "open" and quiet_s >= inactivity.nudge_after_s:
            self._phase, self._nudged_at = "nudged", now
            return [Say(inactivity.nudge, "nudge")] if self.options.speaks_text else []
        if self._phase == "nudged" and now - max(quiet_since, self._nudged_at) >= inactivity.end_after_s:
            return self._close("inactivity", now, Say(inactivity.goodbye, "goodbye"), activity)
        return []

    def next_due(self, now: float, activity: Activity) -> float | None:
        """When `step` may next act if nothing else happens (None: never), asked after a step."""
        if self._phase == "ended":
            return None
        if self._phase == "closing":
            return now + STEP_S
        dues: list[float] = []
        limit = self.options.max_duration_s
        if limit is not None:
            dues.append(self._started_at + limit)
        inactivity = self.options.inactivity
        if inactivity is not None:
            if activity.busy:
                dues.append(now + STEP_S)  # the quiet counts from the last step that saw it busy
            else:
                quiet_since = max(activity.user_at, activity.output_at, self._busy_until)
                if self._phase == "open" or activity.user_at > self._nudged_at:
                    dues.append(quiet_since + inactivity.nudge_after_s)
                else:
                    dues.append(max(quiet_since, self._nudged_at) + inactivity.end_after_s)
        return min(dues) if dues else None

    def _close(self, reason: EndReason, now: float, say: Say, activity: Activity) -> list[Action]:
        if not self.options.speaks_text:  # nothing to say: end once what plays has played
            self._begin_closing(reason, now, 0.0)
            return self._closing_step(now, activity)
        self._begin_closing(reason, now, ANSWER_SETTLE_S)
        return [say]

    def _begin_closing(self, reason: EndReason, now: float, settle_s: float) -> None:
        self._phase, self._reason = "closing", reason
        self._closing_since, self._settle_s = now, settle_s

    def _closing_step(self, now: float, activity: Activity) -> list[Action]:
        assert self._reason is not None
        since = self._closing_since
        answered = activity.answered_at is not None and activity.answered_at >= since
        quiet_since = max(since, activity.output_at, self._busy_until)
        done = not activity.busy and (answered or now - quiet_since >= self._settle_s)
        if done or now - since >= self.options.closing_limit_s:
            self._phase = "ended"
            return [End(self._reason)]
        return []


# -- the glue to a running conversation ----------------------------------------------------------

_CURRENT: contextvars.ContextVar[CallControl | None] = contextvars.ContextVar("agent_run_call", default=None)


def current_call() -> CallControl | None:
    """The call control of the conversation this task belongs to (None outside a conversation)."""
    return _CURRENT.get()


class CallControl:
    """Carries CallClock's actions out in a conversation; an EventTap of it (see `tap`)."""

    def __init__(self, options: CallControlOptions, *, phone: PhoneCall | None, live: Live, player: Player,
                 record: ConversationRecord, transcript: Transcript, console: Console,
                 clock: Callable[[], float]) -> None:
        self.options = options
        self.phone = phone
        self._live = live
        self._player = player
        self._record = record
        self._transcript = transcript
        self._console = console
        self._clock = clock
        self._core = CallClock(options, clock())
        self._user_at = clock()
        self._user_speaking = False
        self._pending: list[Say] = []  # texts waiting for a stream that takes them
        # The supervisor sleeps until a quiet deadline: the next sign of activity must wake it, so
        # the time it stays busy is seen (see next_due).
        self._sleeping_quiet = False

    def started(self, now: float) -> None:
        """The conversation starts now (its limits count from here)."""
        self._core = CallClock(self.options, now)
        self._user_at = now

    def context(self) -> contextvars.Context:
        """A copy of the current context in which this is the current call: the conversation's
        tasks run in it, and the tasks they create (tool calls) inherit it."""
        context = contextvars.copy_context()
        context.run(_CURRENT.set, self)
        return context

    # -- what tools ask -----------------------------------------------------------------------

    def end_call(self) -> None:
        """The model asked to end the call (the end_call tool)."""
        self._core.end("end_call", self._clock())
        self._live.poke()

    def transferred(self) -> None:
        """The call was handed to another party: nothing more reaches the caller from here."""
        self._core.end("transfer", self._clock(), settle_s=0.0)
        self._live.poke()

    @property
    def ending(self) -> str | None:
        return self._core.closing

    async def wait_played(self, limit_s: float = PLAYED_WAIT_S) -> bool:
        """Wait until the assistant's audio queued so far has played (at most `limit_s`)."""
        deadline = self._clock() + limit_s
        while self._player.pending:
            if self._clock() >= deadline or self._live.stopping:
                return False
            await asyncio.sleep(POLL_S)
        return True

    # -- EventTap ------------------------------------------------------------------------------

    def output(self, event: OutputEvent, at: float) -> None:
        # Answers are known from Live.last_answer_at, received events from Live.last_activity.
        self._wake_if_quiet()

    def sent(self, kind: str, at: float, **fields: Any) -> None:
        if kind == "user_text":
            self._user_at = at
        elif kind == "audio":
            self._user_speaking = bool(fields.get("speaking"))
            self._user_at = max(self._user_at, at)
            self._wake_if_quiet()

    def _wake_if_quiet(self) -> None:
        if self._sleeping_quiet:
            self._sleeping_quiet = False
            self._live.poke()

    # -- every tick ----------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self._live.stopping:
            return
        for action in self._core.step(now, self._activity()):
            if isinstance(action, Say):
                self._pending.append(action)
            else:
                self._end(action.reason)
        self._send_pending()

    def next_due(self, now: float) -> float | None:
        """When `tick` next has something to do if nothing else happens (None: only when woken)."""
        if self._live.stopping:
            return None
        if self._pending:
            return now + STEP_S  # a stream being opened or rotated: try again
        activity = self._activity()
        self._sleeping_quiet = not activity.busy and self.options.inactivity is not None
        return self._core.next_due(now, activity)

    def _activity(self) -> Activity:
        return Activity(user_at=self._user_at, output_at=self._live.last_activity,
                        answered_at=self._live.last_answer_at,
                        busy=self._player.pending or self._live.tools_running > 0 or self._user_speaking)

    def _send_pending(self) -> None:
        link = self._live.link
        while self._pending:
            if (link is None or link.closing or not link.usable or not link.accepted.is_set()
                    or link.session.state is not SessionState.STREAMING):
                return  # the next tick tries again (a stream being opened or rotated)
            say = self._pending[0]
            try:
                link.session.send_text(say.text)
            except LocalProtocolError:
                return  # the stream is ending: the next one takes it
            except EventTooLargeError as exc:  # a textInput template that inflates it
                log.warning("call control: %s not sent: %s", say.kind, exc)
                self._pending.pop(0)
                continue
            self._pending.pop(0)
            self._record.expect_echo(say.text, add_to_history=True)
            link.kick()
            self._transcript.write("call_control", event=say.kind, text=say.text)
            self._console.info(f"  [{say.kind}: {say.text}]")

    def _end(self, reason: EndReason) -> None:
        self._transcript.write("call_ended", reason=reason)
        self._console.info(f"  [call ended: {reason}]")
        self._live.request_stop(f"call ended ({_WHY[reason]})")


_WHY: dict[str, str] = {
    "end_call": "the assistant ended it with end_call",
    "inactivity": "the user stayed silent",
    "max_duration": "session.max_duration_s reached",
    "transfer": "transferred",
}
