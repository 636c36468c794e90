"""What was said: the history replayed into each new stream, and the transcript and console lines.

The server keeps no state to reattach to (nova-sonic-protocol.md §9), so the conversation keeps
its own history (USER transcripts, ASSISTANT FINAL text). The service echoes every text the runner
sends as interactive USER text (the greeting, a re-sent user message, a late tool result) as a
USER transcript: those echoes are recognised here, so none is shown as something the user said.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, NamedTuple

from runner.console import Console
from runner.protocol.events import OutputEvent, UsageEvent
from runner.protocol.history import HistoryRecorder
from runner.protocol.setup import HistoryMessage
from runner.transcript import Transcript


class Heard(NamedTuple):
    """A text block the service completed: who said it, as the conversation sees it."""

    kind: Literal["user", "assistant", "greeting", "echo"]  # echo: of a text the runner sent
    text: str


class ConversationRecord:
    def __init__(self, transcript: Transcript, console: Console) -> None:
        self._transcript = transcript
        self._console = console
        self._recorder = HistoryRecorder()
        self.messages: list[HistoryMessage] = []
        # Texts the runner itself sent as interactive USER text and whose echo is still to come,
        # counted per whether the echo belongs in the history (a re-sent user message is already
        # there; a tool note is not). Counted: the same text may be sent twice before its echo.
        self._echoes: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
        # The greeting sent to the first stream; its echo is the greeting, not the user.
        self.greeting_echo: str | None = None
        self._last_usage: UsageEvent | None = None
        self._usage_written: UsageEvent | None = None

    def expect_echo(self, text: str, *, add_to_history: bool) -> None:
        """The runner sends `text` as interactive USER text: its echo is not the user speaking."""
        self._echoes[add_to_history][text] += 1

    def keep(self, message: HistoryMessage) -> None:
        """A message for the next stream's history that no stream has heard yet."""
        self.messages.append(message)

    def said_by_user(self, text: str) -> None:
        """The user typed `text`: recorded now (so it is replayed even if the stream dies before
        its echo), and its echo is expected."""
        self.expect_echo(text, add_to_history=False)
        self._said(HistoryMessage("USER", text))

    def history_for_next_stream(self, nova2: bool) -> tuple[tuple[HistoryMessage, ...], str | None]:
        """The history to replay, and the trailing USER message to re-send as interactive text.

        A stream that died after the user spoke but before the answer leaves a trailing USER
        message; on Nova 2 it is sent as interactive text after the audio block opens so the
        model answers it (pipecat and livekit do the same), instead of as history.
        """
        messages = tuple(self.messages)
        if messages and messages[-1].role == "USER" and nova2:
            return messages[:-1], messages[-1].text
        return messages, None

    def feed(self, event: OutputEvent) -> Heard | None:
        """Record an output event; what it completed, if anything."""
        if isinstance(event, UsageEvent):
            self._last_usage = event
        message = self._recorder.feed(event)
        if message is None:
            return None
        if message.role == "USER" and self._echo(message.text):
            return Heard("echo", message.text)
        if message.role == "USER" and message.text == self.greeting_echo:
            # The service's echo of the greeting instruction: kept in the history (the model's
            # greeting answers it), but it is not something the user said.
            self.greeting_echo = None
            self.messages.append(message)
            self._transcript.write("greeting", text=message.text)
            self._console.greeting(message.text)
            return Heard("greeting", message.text)
        self._said(message)
        return Heard("user" if message.role == "USER" else "assistant", message.text)

    def _echo(self, text: str) -> bool:
        """Whether `text` is the echo of something the runner sent (then handled here)."""
        for add_to_history, pending in self._echoes.items():
            if pending[text]:
                pending[text] -= 1
                if add_to_history:
                    self.messages.append(HistoryMessage("USER", text))
                return True
        return False

    def _said(self, message: HistoryMessage) -> None:
        self.messages.append(message)
        kind = "user" if message.role == "USER" else "assistant"
        self._transcript.write(kind, text=message.text)
        (self._console.user if kind == "user" else self._console.assistant)(message.text)

    def write_usage(self) -> None:
        """The latest token totals, once each (the final usageEvent comes after END_TURN)."""
        usage = self._last_usage
        if usage is None or usage is self._usage_written:
            return
        self._usage_written = usage
        self._transcript.write("usage", input_tokens=usage.total_input_tokens,
                               output_tokens=usage.total_output_tokens, total_tokens=usage.total_tokens)
