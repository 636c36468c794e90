"""Every bench in bench/ still runs: a CI-sized run of each, as the subprocess a person would start,
must exit 0 and print its figures. Nothing here asserts a timing (the figures are for people, on a
quiet machine: bench/README.md); the runs are small so the whole file stays near two minutes.

Where a bench has `--quick` and it fits that budget, it is used; otherwise the smallest arguments
that still exercise every part of the bench (noted per case).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (script, arguments, patterns its output must hold: the figures it exists to print)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "bench_runner.py": (["--quick"], [
        r"runner  : \d+\.\d+ %", r"baseline: \d+\.\d+ %", r"runner / baseline: x\d+\.\d+",
        r"interruption signal decoded -> silence", r"invoke_tool micro-benchmark"]),
    "bench_callbacks.py": (["--quick"], [
        r"CPU per real-time session \(bench_runner's figure a\): \d+\.\d+ %", r"loop thread \(main\) +: +\d",
        r"loop: select +\d+/s", r"task Microphone\.run"]),
    "bench_sdk_send.py": (["--quick"], [
        r"burst  fast path +: +\d+\.\d µs/event", r"paced  SDK publisher.send +: +\d+\.\d µs/event",
        r"paced  \+ bounded_if_suspends: +\d+\.\d µs/event", r"fast path \d+\.\d+ %"]),
    "bench_emulator.py": (["--quick"], [
        r"nova-in   audioInput 1024 B, NovaHandler +: \d", r"nova-out  output events, NovaHandler +: \d",
        r"listening session \(31.25 in/s\) +: \d", r"emulator CPU \d+\.\d % of a core"]),
    # No --quick: the README's own CI-sized arguments.
    "bench_emulator_wire.py": (["--events", "300", "--seconds", "2"], [
        r"input: +300 audioInput events .*µs/ev", r"output: +300 audioOutput events .*µs/ev",
        r"verified: 8 concurrent real-time sessions"]),
    # --quick is a 1/5/10 ramp of ~50 s: two small steps check the same machinery.
    "bench_serve.py": (["--ramp", "1,2", "--step-s", "3", "--warmup-s", "1"], [
        r"\| 1 \| 1 \| \d+\.\d+ \|", r"\| 2 \| 2 \| \d+\.\d+ \|", r"largest N held"]),
    # --quick is 40 conversations per mode: four in one mode check the same machinery.
    "bench_memory.py": (["-n", "4", "--warmup", "2", "--mode", "shared"], [
        r"4 conversations in", r"retained per conversation after warm-up: RSS -?\d"]),
    # --quick is one 40 s segment: a 20 s one still rotates and injects every fault.
    "bench_soak.py": (["--minutes", "0.34", "--segment-s", "20", "--no-tracemalloc"], [
        r"turns: +\d+/\d+ completed", r"streams: +\d+ opened", r"memory: +RSS"]),
}


@pytest.mark.bench
@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", list(BENCHES))
def test_bench_runs_and_prints_its_figures(script: str) -> None:
    args, patterns = BENCHES[script]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's runner, not the venv's install
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=280, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{output[-3000:]}"
    missing = [p for p in patterns if not re.search(p, done.stdout)]
    assert not missing, f"{script} did not print {missing}:\n{done.stdout[-3000:]}"


def test_every_bench_is_covered() -> None:
    scripts = {p.name for p in (ROOT / "bench").glob("bench_*.py")}
    assert scripts == set(BENCHES), "a bench without a CI run here (or a run of a bench that is gone)"
