"""How much of the assistant's audio a remote caller has played, from the marks it echoes.

A served caller's sink hands audio to a transport (Twilio Media Streams, the browser page's
WebSocket) that plays it at the far end, later, behind a buffer the server does not see. So the
sink puts a mark after some of the audio it sends; the far end echoes a mark once the audio before
it has played (Twilio's `mark` event, the page's `{"type": "mark"}`). `PlayoutLedger` turns those
echoes into `played`: bytes of the agent's output format the caller has heard, which is the sink's
`SinkStatistics.bytes_played`. The turn meter (runner.telemetry.meter) reads an answer's "first
sample played" from it, and knows an answer is still playing while it lags.

`played` never runs ahead of what the far end confirmed: it reads late by the audio between the
answer's first sample and the first mark after it (the sinks mark after an answer's first 20 ms
frame, so at most that, plus the mark's trip back). A barge-in (`cleared`) drops what the far end
held: nothing more of it will play, so it all counts as done, and the marks still out are forgotten
(the far end echoes or drops them; either way they no longer say anything).

Sans-IO: no clock, no transport; the sinks feed it.
"""

from __future__ import annotations

from collections import OrderedDict

# Echoed marks never sent (or already forgotten) are ignored; this bounds what is remembered of
# marks a far end never echoes (a /ws client that ignores them): the oldest are forgotten.
MAX_OUTSTANDING = 256


class PlayoutLedger:
    """Bytes sent to the far end, the marks among them, and the bytes confirmed played."""

    def __init__(self) -> None:
        self.sent = 0  # bytes handed to the transport
        self.played = 0  # of them, confirmed played by an echoed mark (or dropped by a clear)
        self.marks_sent = 0
        self.marks_confirmed = 0
        self._marks: OrderedDict[str, int] = OrderedDict()  # outstanding: name -> bytes before it

    def add(self, nbytes: int) -> None:
        """`nbytes` more went to the far end."""
        self.sent += nbytes

    def mark(self, name: str, position: int | None = None) -> None:
        """A mark named `name` went out after `position` bytes (default: everything sent so far)."""
        self._marks[name] = min(self.sent, self.sent if position is None else position)
        self.marks_sent += 1
        while len(self._marks) > MAX_OUTSTANDING:
            self._marks.popitem(last=False)

    def reached(self, name: str) -> bool:
        """The far end echoed mark `name`: what was sent before it has played. False when the mark
        is not outstanding (never sent, forgotten at a clear, echoed twice): nothing changes."""
        position = self._marks.get(name)
        if position is None:
            return False
        # Marks are echoed in order: any sent before this one have played too.
        while self._marks:
            earlier, _ = self._marks.popitem(last=False)
            if earlier == name:
                break
        self.played = max(self.played, position)
        self.marks_confirmed += 1
        return True

    def cleared(self) -> None:
        """The far end dropped what it held (barge-in): none of it will play; no mark is awaited."""
        self._marks.clear()
        self.played = self.sent

    @property
    def unconfirmed(self) -> int:
        """Bytes sent that no echoed mark has confirmed yet."""
        return self.sent - self.played
