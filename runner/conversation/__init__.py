"""A conversation that outlives any one Nova Sonic stream.

Theory of operation
- Nova Sonic ends every stream after 8 minutes and streams also die from throttling, resets and
  stray bad bytes (nova-sonic-protocol.md §4.4, §5). The server keeps no state to reattach to, so
  the conversation keeps its own history (USER transcripts, ASSISTANT FINAL text) and replays it
  into each new stream (§9).                                                        [record.py]
- A Link is one stream: its sans-IO Session, its transport Stream, one writer task (the only
  sender, so atomically queued text/tool blocks are never split by audio) and one reader task.
  Link tasks never raise into the conversation: a failure is recorded on the link and the
  supervisor decides what to do.                                                      [link.py]
- The supervisor opens links. Proactively, once a stream is older than `rotate_after_s` and at a
  turn boundary (nothing answering, no tool pending), it hands over: the new Session is created
  first and the microphone switches to it at once (its audio is held back in order until the new
  audio block opens, so nothing the user says is dropped), then the old link is closed in the
  documented order. Reactively, after a retryable stream error it reconnects the same way with
  bounded exponential backoff; a non-retryable error (validation, access denied) ends the run
  with the service's message.                                                   [supervisor.py]
- The audio block of a new stream opens only once the service accepted the request (HTTP 200),
  so a throttled or refused attempt loses no audio: it stays held for the next attempt.
- Output events are recorded (history, transcript, console), then the policy turns them into
  actions: play, flush playback, mark an interruption, call a tool.                 [events.py]
- A tool result goes to the stream that issued the call. If that stream is gone, the result is
  given to the current stream as interactive USER text (Nova 2) or kept for the next history
  replay (v1): never lost, never sent as a toolResult to a stream that did not issue it. [tools.py]
- mic:    policy gate -> source.read() (paced; silence while muted) -> current session. A muted
          file source holds its place instead of playing into the closed gate, so under the
          half-duplex policy a recorded question waits for the assistant (its greeting included:
          the gate stays closed from the greeting's sending until its answer has played).
- The greeting (Nova 2) is sent as interactive USER text; the service echoes it as a USER
  transcript, which is recorded and shown as the greeting, not as something the user said.
- player: Play actions pass through a bounded queue to the sink, so a full sink never stalls the
          reader: an interruption must be seen at once, not after seconds of queued audio.
                                                                                      [audio.py]
- Typed input (text mode) goes to the current stream as interactive USER text, turn by turn
  for a script, at once for a person (over the assistant: a barge-in).                [text.py]
- Taps see every output event and what the runner sent, for tests and measurements.   [taps.py]
- Call control ends a conversation on purpose once its last words have played: the end_call
  tool, the user's silence (a nudge, then a goodbye, said as interactive USER text on Nova 2),
  the agent's time limit (a closing line), a phone transfer. Its decisions are a sans-IO clock
  the supervisor's tick drives; tools reach it through a context variable.         [control.py]
- Every turn is measured (end of speech -> first audio decoded / first sample played, tool time,
  stream set-up, tokens and cost) by a sans-IO tracker the taps and the router feed; the results
  go to the transcript (`turn`, `summary`), the console and, when configured, OpenTelemetry.
                                                                  [runner/telemetry, core.py]
- What the parts share (the current stream, the stop request, what is busy) lives in one place,
  each field with one writer.                                                         [state.py]
- Nothing polls: the supervisor sleeps until the next deadline that is due (rotation, idle
  exit, max duration, call control, a turn's close), computed, not looked for; whatever brings
  one nearer (a stop request, a link done, an answer ending, the input ending, activity after a
  quiet spell) wakes it through `Live.poke`. A loop wake-up is what a session's CPU goes to.
                                                                 [supervisor.py, core.py]
"""

from runner.conversation.core import Conversation, ConversationOptions
from runner.conversation.link import Link
from runner.conversation.state import StopRequest
from runner.conversation.supervisor import SessionFactory
from runner.conversation.taps import EventTap
from runner.conversation.text import QueueTextInput, TextInput

__all__ = ["Conversation", "ConversationOptions", "EventTap", "Link", "QueueTextInput", "SessionFactory",
           "StopRequest", "TextInput"]
