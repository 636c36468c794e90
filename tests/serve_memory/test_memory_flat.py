"""One process serving conversations one after another keeps a flat memory footprint.

A child process runs bench/bench_memory.py: CONVERSATIONS conversations, each the real engine
(`run_agent` with a fresh in-process emulator and SDK client, as `agent-run AGENT --emulate`), the
real SDK over TLS, a short WAV heard by the emulator's speech recognition (Whisper, when the asr
extra is installed, as `scripts/dev` installs it) and a tool call. After each it reads RSS (after
gc). What the process holds after the warm-up must stay put: before runner/emulator/asr.py ran
recognition in one dedicated thread, each thread of the loop's default pool kept ~8 MB of
CTranslate2's freed buffers in its own glibc arena, and RSS grew by ~2 MB per conversation (25 MB
between conversations 5 and 20 here). The bound is generous for a noisy shared machine, and far
below that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONVERSATIONS = 20
WARMUP = 5
MAX_GROWTH_MB = 8.0  # RSS, from the end of the warm-up to the last conversation
MAX_OBJECTS_PER_CONVERSATION = 60.0  # Python objects tracked by gc (slope); ~12 today, bounded caches


def test_rss_stays_flat_over_conversations_one_after_another() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's defaults
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_memory.py"), "--mode", "per-run", "--wav",
         "-n", str(CONVERSATIONS), "--warmup", str(WARMUP), "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    rows = result["rows"]
    assert len(rows) == CONVERSATIONS
    rss = [round(r["rss_mb"], 1) for r in rows]
    growth = rss[-1] - rss[WARMUP - 1]
    assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.1f} MB after the warm-up: {rss}"
    assert result["objects_per_conversation"] < MAX_OBJECTS_PER_CONVERSATION, (
        f"{result['objects_per_conversation']:.1f} Python objects kept per conversation")
    threads = [r["threads"] for r in rows]
    assert threads[-1] <= threads[WARMUP - 1] + 2, f"threads: {threads}"  # no thread per conversation
    assert rows[-1]["fds"] <= rows[WARMUP - 1]["fds"] + 2, f"fds: {[r['fds'] for r in rows]}"
