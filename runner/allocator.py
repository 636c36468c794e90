"""The C allocator of a long-lived process (a server, `agent-run emulate`): a bounded footprint.

glibc's malloc gives each thread that allocates its own arena, up to 8 per core, and an arena
keeps what was freed in it for its next allocations rather than returning it to the system. A
process serving conversations one after another has many threads that come and go or take turns
(awscrt's event-loop thread per SDK client, the loop's default thread pool running tool handlers,
speech synthesis and Whisper recognition, CTranslate2's own threads). Each one that touches
large buffers (Whisper's, several MB) leaves them in its arena: bench/bench_memory.py --wav
measured RSS growing in steps of 5-15 MB, about 2 MB per conversation over the first 30, with
no growth of Python objects. With at most 2 arenas the freed buffers are reused by whichever
thread allocates next, and RSS stays flat (the same bench: no growth after the 5th
conversation). Python's own objects come from pymalloc under the GIL, so the cost is some lock
contention between native threads, which is negligible here.

`limit_malloc_arenas()` is mallopt(M_ARENA_MAX): call it first thing in a long-lived process,
before threads start. A MALLOC_ARENA_MAX already set in the environment (the user's or the
operator's choice) wins; other C libraries (musl) and systems are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc malloc.h
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas`; True when the cap was set by this call."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols to reach
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # glibc returns 1 on success; musl's mallopt is a stub returning 0.
    return bool(mallopt(M_ARENA_MAX, arenas))
