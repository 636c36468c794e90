"""Conversation history replayed at the start of a stream (continuation, issue 5).

The service has no server-side resume: a new stream gets the conversation so far as history
blocks. The documented limits disagree, so this module applies the strictest of them
(nova-sonic-protocol.md §2.5 rule 2):

- the first message is USER ("First message in chat history should not be Assistant"): leading
  ASSISTANT messages are dropped;
- consecutive messages of the same role are merged into one;
- at most 40 messages and 40 KB of text in total, the oldest dropped first;
- at most 1 KB per `textInput`: the session splits each message with `split_utf8`.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.protocol.events import ContentEnd, ContentStart, ContentType, OutputEvent, Role, TextOutput
from runner.protocol.setup import HistoryMessage

MAX_MESSAGES = 40
MAX_TOTAL_BYTES = 40_000
MAX_TEXT_INPUT_BYTES = 1024


def prepare_history(messages: Iterable[HistoryMessage], *, max_messages: int = MAX_MESSAGES,
                    max_total_bytes: int = MAX_TOTAL_BYTES) -> tuple[HistoryMessage, ...]:
    """`messages` (oldest first) cut down to what Nova accepts as history, oldest first."""
    merged = _merge_same_role(m for m in messages if m.text.strip())
    kept = _newest_within(merged, max_messages, max_total_bytes)
    while kept and kept[0].role != "USER":
        kept.pop(0)
    return tuple(kept)


def _merge_same_role(messages: Iterable[HistoryMessage]) -> list[HistoryMessage]:
    merged: list[HistoryMessage] = []
    for message in messages:
        if merged and merged[-1].role == message.role:
            merged[-1] = HistoryMessage(message.role, f"{merged[-1].text}\n{message.text}")
        else:
            merged.append(message)
    return merged


def _newest_within(messages: list[HistoryMessage], max_messages: int,
                   max_total_bytes: int) -> list[HistoryMessage]:
    kept: list[HistoryMessage] = []
    budget = max_total_bytes
    for message in reversed(messages):
        if len(kept) >= max_messages or budget <= 0:
            break
        size = len(message.text.encode())
        if size > budget:
            if not kept:
                # The newest message alone is over budget: keep its end (the latest words).
                kept.append(HistoryMessage(message.role, _utf8_tail(message.text, budget)))
            break
        kept.append(message)
        budget -= size
    kept.reverse()
    return kept


def _utf8_tail(text: str, max_bytes: int) -> str:
    data = text.encode()[-max_bytes:]
    # Drop continuation bytes of a character cut at the front.
    return data.decode("utf-8", errors="ignore")


def split_utf8(text: str, max_bytes: int = MAX_TEXT_INPUT_BYTES) -> list[str]:
    """`text` in pieces of at most `max_bytes` UTF-8 bytes, never splitting a character.

    Returns at least one piece (an empty text gives `[""]`).
    """
    if max_bytes < 4:
        raise ValueError("max_bytes must hold any UTF-8 character (at least 4)")
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        n = len(char.encode("utf-8", errors="surrogatepass"))
        if size + n > max_bytes:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += n
    pieces.append("".join(current))
    return pieces


class HistoryRecorder:
    """The conversation as the service saw it, built from output events for a later replay.

    The server keeps no state to reattach to (§9), so the runner keeps its own log: USER text
    blocks (the final transcript) and ASSISTANT FINAL text blocks (what was actually spoken, also
    for an interrupted answer). SPECULATIVE text and the interruption marker are not recorded.
    """

    def __init__(self) -> None:
        self._open: dict[str, tuple[Role, list[str]]] = {}
        self._messages: list[HistoryMessage] = []

    def feed(self, event: OutputEvent) -> HistoryMessage | None:
        """Record `event`; returns the message it completed, if any."""
        match event:
            case ContentStart(type=ContentType.TEXT) if _recorded(event):
                self._open[event.content_id] = (event.role, [])
            case TextOutput() if event.content_id in self._open and not event.is_interruption:
                self._open[event.content_id][1].append(event.content)
            case ContentEnd() if event.content_id in self._open:
                role, parts = self._open.pop(event.content_id)
                text = "".join(parts).strip()
                if text:
                    message = HistoryMessage("USER" if role is Role.USER else "ASSISTANT", text)
                    self._messages.append(message)
                    return message
            case _:
                pass
        return None

    @property
    def messages(self) -> tuple[HistoryMessage, ...]:
        return tuple(self._messages)


def _recorded(event: ContentStart) -> bool:
    if event.role is Role.USER:
        return event.generation_stage in (None, "FINAL")
    return event.role is Role.ASSISTANT and event.generation_stage == "FINAL"
