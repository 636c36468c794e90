"""The worker declines permessage-deflate (browsers offer it on every WebSocket).

PCM audio barely compresses, and the zlib states made and freed with each caller left a worker
larger after each spoken conversation: side by side, 80 conversations of speech grew 12.7 kB each
(Theil-Sen) with the extension and 1.0 kB without (bench/bench_memory.py --wav, bench/README.md).
A real server process, a real client offering the extension as browsers do.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.serve.serve_helpers import ServeProcess

pytestmark = pytest.mark.timeout(60)


def test_a_browser_offering_permessage_deflate_gets_an_uncompressed_socket(tmp_path: Path) -> None:
    async def offered_and_agreed(url: str) -> tuple[str, str | None, str]:
        async with connect(url, compression="deflate", open_timeout=10, close_timeout=5) as ws:
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ws.request is not None and ws.response is not None
            return (ws.request.headers.get("Sec-WebSocket-Extensions", ""),
                    ws.response.headers.get("Sec-WebSocket-Extensions"), ready["type"])

    with ServeProcess(tmp_path) as server:
        server.wait_ready()
        offer, agreed, first = asyncio.run(offered_and_agreed(server.ws_url))
    assert "permessage-deflate" in offer
    assert agreed is None
    assert first == "ready"
