"""One `agent-run serve` worker serving conversations one after another keeps a flat footprint.

A child process runs bench/bench_memory.py --mode serve: `agent-run emulate` in one process (its
memory is not the worker's), an `agent-run serve agents/orders.yaml` worker in another, and
conversations one after another on the worker's /ws from the bench (a typed question, the tool
call, "Done." with its audio, hang up). After each one the worker reports, from inside (SIGUSR1):
RSS after gc, Python objects tracked by gc, a few object types by count (SDK clients, CRT event
loop groups and TLS contexts, conversations), its OS threads and open fds.

Figures this bound is set from (2026-11-30, 2 shared cores, load average up to 9): over 500
conversations RSS went 93.8 MB (#10) -> 93.9 MB (#500), least-squares 0.14 kB per conversation
after the warm-up, Theil-Sen 0.09 kB; in an earlier run the Theil-Sen slope of any 60-conversation
window was 0-1.7 kB, the widest swing inside one 0.11 MB. Python objects: 0.05 per conversation.
A leak of 1 MB per conversation (`--leak-kb 1024`, the size issue 10 reported) measures 1012 kB.
So MAX_KB_PER_CONVERSATION is 100 kB: 10x below that leak, 50x above what was measured, and a
single 5 MB step (an allocator mapping a buffer for good) in the window moves a median of pairwise
slopes by far less than that. Typed input keeps the test short; spoken input (`--wav`, 1.5 s of
real time each) is the bench's, and test_no_compression guards what made it grow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONVERSATIONS = 50  # 0.3-0.8 s each with the probe, plus ~10 s to start the emulator and the worker
WARMUP = 10  # first-use imports, caches, the thread pool's threads, the allocator's pools
MAX_KB_PER_CONVERSATION = 100.0  # Theil-Sen slope of RSS after the warm-up; see the docstring
MAX_OBJECTS_PER_CONVERSATION = 5.0  # a Conversation kept alive would hold hundreds
ONE_OF_EACH = ("AsyncBedrockRuntimeClient", "AWSCRTHTTPClient", "EventLoopGroup", "ClientBootstrap",
               "ClientTlsContext", "DefaultHostResolver")
NONE_LEFT = ("Conversation", "BrowserCaller", "CallerTranscript", "BedrockStream")

pytestmark = pytest.mark.timeout(200)


def run_bench(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO)  # this checkout's runner, whatever the venv's editable install points at
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_memory.py"), "--mode", "serve", "--json", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_serve_worker_stays_flat_over_conversations_one_after_another() -> None:
    result = run_bench("-n", str(CONVERSATIONS), "--warmup", str(WARMUP))
    rows = result["rows"]
    assert len(rows) == CONVERSATIONS
    rss = [round(r["rss_mb"], 1) for r in rows]
    kb = result["rss_mb_per_conversation_robust"] * 1e3
    assert kb < MAX_KB_PER_CONVERSATION, f"RSS grows {kb:.1f} kB per conversation: {rss}"
    objects = result["objects_per_conversation"]
    assert objects < MAX_OBJECTS_PER_CONVERSATION, f"{objects:.1f} Python objects kept per conversation"

    # One SDK client (with one CRT event-loop group, bootstrap, TLS context and resolver) serves
    # every conversation, and no conversation outlives its caller.
    for row in rows:
        watched = row["watched"]
        assert {k: watched[k] for k in ONE_OF_EACH} == dict.fromkeys(ONE_OF_EACH, 1), (row["i"], watched)
        assert {k: watched[k] for k in NONE_LEFT} == dict.fromkeys(NONE_LEFT, 0), (row["i"], watched)

    # Threads: the worker's Python threads are the same after the last conversation as after the
    # first; its OS threads (awscrt's event loop, the loop's pool) never exceed what the warm-up saw.
    # (A pool thread started by the first conversations stays, idle, for the next.)
    assert rows[-1]["threads"] == rows[0]["threads"], [r["threads"] for r in rows]
    os_threads = [r["os_threads"] for r in rows]
    assert max(os_threads[WARMUP:]) <= max(os_threads[:WARMUP]), os_threads
    assert rows[-1]["thread_names"].get("AwsEventLoop", 0) == rows[0]["thread_names"].get("AwsEventLoop", 0)
    assert rows[-1]["fds"] <= rows[0]["fds"] + 1, [r["fds"] for r in rows]


def test_the_bound_catches_a_leak_of_one_megabyte_per_conversation() -> None:
    """The same measurement with a 1 MB leak put in the worker on purpose fails the bound."""
    result = run_bench("-n", "12", "--warmup", "3", "--leak-kb", "1024")
    kb = result["rss_mb_per_conversation_robust"] * 1e3
    assert kb > MAX_KB_PER_CONVERSATION * 5, f"a 1 MB leak measured as {kb:.1f} kB per conversation"
