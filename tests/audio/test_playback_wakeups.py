"""Fewer wake-ups: a playback consumer wakes the loop (space_freed) only when a write waits for room."""

from __future__ import annotations

import asyncio

from runner.audio.base import AudioFormat
from runner.audio.playback import PlaybackQueue

F16 = AudioFormat(16000)


def test_space_is_wanted_only_while_a_put_waits_for_room() -> None:
    async def main() -> None:
        queue = PlaybackQueue(F16, capacity_ms=100)  # 3200 bytes
        await queue.put(bytes(1000))
        assert queue.take(320) and not queue.space_wanted  # room left: nobody to wake
        writer = asyncio.create_task(queue.put(bytes(4000)))  # more than the room: it waits
        await asyncio.sleep(0)
        assert not writer.done()
        assert queue.take(3200) and queue.space_wanted
        queue.space_freed()
        async with asyncio.timeout(2):
            while not writer.done():
                await asyncio.sleep(0)
                if queue.take(3200) and queue.space_wanted:
                    queue.space_freed()
        assert queue.bytes_written == 1000 + 4000
        assert not queue.space_wanted  # the put is over

    asyncio.run(main())


def test_a_flush_releases_a_waiting_put_and_clears_the_want() -> None:
    async def main() -> None:
        queue = PlaybackQueue(F16, capacity_ms=100)
        await queue.put(bytes(3200))
        writer = asyncio.create_task(queue.put(bytes(640)))
        await asyncio.sleep(0)
        assert queue.space_wanted
        assert queue.flush() == 3200
        async with asyncio.timeout(2):
            await writer
        assert not queue.space_wanted
        assert queue.bytes_dropped == 3200 + 640

    asyncio.run(main())
