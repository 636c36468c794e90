"""Builders for Nova output payloads and an independent checker of input-event order."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

NOVA2 = "amazon.nova-2-sonic-v1:0"
NOVA1 = "amazon.nova-sonic-v1:0"


def ids(prefix: str = "id") -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


def out(name: str, **body: Any) -> bytes:
    return json.dumps({"event": {name: body}}).encode()


def content_start(cid: str, type_: str, role: str, stage: str | None = None) -> bytes:
    body: dict[str, Any] = {"contentId": cid, "type": type_, "role": role}
    if stage is not None:
        body["additionalModelFields"] = json.dumps({"generationStage": stage})
    return out("contentStart", **body)


def content_end(cid: str, type_: str, stop: str | None = None) -> bytes:
    body: dict[str, Any] = {"contentId": cid, "type": type_}
    if stop is not None:
        body["stopReason"] = stop
    return out("contentEnd", **body)


def tool_use(tool_use_id: str, name: str = "lookup", args: dict[str, Any] | None = None,
             cid: str = "tool-c") -> bytes:
    return out("toolUse", contentId=cid, toolName=name, toolUseId=tool_use_id,
               content=json.dumps(args or {}))


def audio_out(cid: str, pcm: bytes) -> bytes:
    return out("audioOutput", contentId=cid, content=base64.b64encode(pcm).decode())


def decode_all(payloads: Sequence[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """Each payload as (event name, body)."""
    result = []
    for payload in payloads:
        doc = json.loads(payload)
        ((name, body),) = doc["event"].items()
        result.append((name, body))
    return result


def check_input_order(events: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Assert the documented input order (nova-sonic-protocol.md §2.5), written independently of
    the session's tables."""
    names = [n for n, _ in events]
    assert names[:2] == ["sessionStart", "promptStart"], names[:3]
    prompt = events[1][1]["promptName"]
    assert all(b.get("promptName", prompt) == prompt for _, b in events[1:])
    first_block = events[2][1]
    assert names[2] == "contentStart" and first_block["role"] == "SYSTEM"
    open_block: dict[str, Any] | None = None
    audio_name: str | None = None
    ended = False
    for name, body in events[2:]:
        assert not ended or name in ("promptEnd", "sessionEnd"), f"{name} after the audio block closed"
        if name == "contentStart":
            assert open_block is None, "a block opened inside a TEXT/TOOL block"
            if body["type"] == "AUDIO":
                assert audio_name is None, "a second audio block"
                audio_name = body["contentName"]
            else:
                if body["interactive"] or body["type"] == "TOOL":
                    assert audio_name is not None, "interactive text/tool result before the audio block"
                else:
                    assert audio_name is None, "history after the audio block"
                open_block = body
        elif name in ("textInput", "toolResult"):
            assert open_block is not None and body["contentName"] == open_block["contentName"]
            if name == "textInput":
                assert len(body["content"].encode()) <= 1024
            else:
                json.loads(body["content"])
        elif name == "audioInput":
            assert open_block is None, "audioInput while a TEXT/TOOL block is open"
            assert body["contentName"] == audio_name
        elif name == "contentEnd":
            if open_block is not None:
                assert body["contentName"] == open_block["contentName"]
                open_block = None
            else:
                assert body["contentName"] == audio_name
                ended = True
    if "sessionEnd" in names:
        assert names[-1] == "sessionEnd" and names[-2] == "promptEnd"
        if audio_name is not None:
            assert events[-3] == ("contentEnd", {"promptName": prompt, "contentName": audio_name})
