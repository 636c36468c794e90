"""Issue 5: the history replayed into a new stream stays within what Nova accepts.

A conversation far over the limits (60 messages, ~2 KB each, starting with ASSISTANT, with
same-role runs) is replayed through the real session, SDK and TLS into the emulator, whose
validator rejects exactly what the service rejects (>40 messages, >1 KB per textInput, >40 KB,
first message ASSISTANT). The stream must be accepted and keep the newest messages.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid

import pytest

from runner.config.templates import load_event_templates
from runner.emulator.local import local_emulator
from runner.emulator.validation import MAX_HISTORY_BYTES, MAX_HISTORY_MESSAGES
from runner.protocol.session import Session
from runner.protocol.setup import HistoryMessage, SessionSetup
from runner.transports.bedrock import open_connector

pytestmark = pytest.mark.usefixtures("restore_environ")


def long_history() -> tuple[HistoryMessage, ...]:
    roles = ["ASSISTANT"] + ["USER", "USER", "ASSISTANT"] * 20  # leading ASSISTANT, same-role runs
    return tuple(HistoryMessage(role, f"message {i}: " + "é" * 1000)  # 2 KB of UTF-8 each
                 for i, role in enumerate(roles))


def test_an_oversized_history_is_trimmed_to_what_the_service_accepts() -> None:
    history = long_history()

    async def main() -> tuple[list[tuple[str, str]], str | None, list[str]]:
        async with local_emulator() as emulator:
            os.environ.update(emulator.env())
            connector = await open_connector(region="us-east-1", endpoint=emulator.endpoint)
            try:
                stream = await connector.open_stream("amazon.nova-2-sonic-v1:0")
                setup = SessionSetup(model_id="amazon.nova-2-sonic-v1:0", voice_id="matthew",
                                     system_prompt="Be brief.", history=history)
                session = Session(setup, load_event_templates(), new_id=lambda: str(uuid.uuid4()))
                session.start()
                for _ in range(10):
                    session.send_audio(bytes(1024))
                session.end()
                async with asyncio.timeout(20):
                    for payload in session.data_to_send():
                        await stream.send(payload)
                    await stream.close_input(2.0)
                    while await stream.receive() is not None:
                        pass
                await stream.aclose()
            finally:
                await connector.aclose()
            record = emulator.handler.sessions[0]
            return record.history, record.error, record.input_events

    received, error, events = asyncio.run(main())
    assert error is None, error
    assert events[-1] == "sessionEnd"
    assert 0 < len(received) <= MAX_HISTORY_MESSAGES
    assert sum(len(text.encode()) for _, text in received) <= MAX_HISTORY_BYTES
    assert received[0][0] == "USER"
    assert all(a[0] != b[0] for a, b in itertools.pairwise(received)), "same roles merged"
    # The newest messages survive; the oldest were dropped.
    assert "message 60:" in received[-1][1]
    assert "message 0:" not in " ".join(text for _, text in received)
