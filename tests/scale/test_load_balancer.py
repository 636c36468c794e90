"""Scale out: three `agent-run serve` workers behind a real HAProxy (Debian's package), phone calls
through it from simulated Twilio callers (tests/twilio/twilio_caller.py) against the emulator.

HAProxy is configured the way the README's "Deploying" part recommends: `mode http` (WebSocket
upgrades pass through), `timeout tunnel` for long calls, `balance leastconn`, and a health check on
`/readyz` every 200 ms so that a full or draining worker leaves the pool at once while its live
calls go on (HAProxy does not cut established sessions of a server marked down).

Checked: calls spread over the workers; when all are full a further caller is refused (HTTP 503 from
HAProxy, or 1013 from a worker the check had not yet seen full) rather than given a degraded call;
SIGTERM one worker mid-load: its live calls finish with complete transcripts, new calls go to the
others, and it exits 143 once its calls have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "twilio"))
from twilio_caller import SAMPLES, ServeProcess, TwilioCaller, wav_as_ulaw

from tests.serve.serve_helpers import free_port

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("haproxy") is None,
                       reason="haproxy is not installed (apt-get install haproxy; scripts/dev installs it)"),
]

WORKERS = 3
PER_WORKER = 2
SCENARIO = SAMPLES / "orders.scenario.yaml"

HAPROXY_CFG = """\
global
    maxconn 200
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout tunnel 120s
    timeout check 1s
frontend calls
    bind 127.0.0.1:{port}
    default_backend workers
backend workers
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 1 rise 1
{servers}
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


class HAProxy:
    """`haproxy -db -f CFG` in the foreground, in front of the given ports."""

    def __init__(self, tmp: Path, ports: list[int]) -> None:
        self.port, self.stats_port = free_port(), free_port()
        servers = "\n".join(f"    server w{i} 127.0.0.1:{p} check" for i, p in enumerate(ports))
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=self.port, stats_port=self.stats_port, servers=servers))
        self.log = (tmp / "haproxy.log").open("w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it (UP, DOWN, ...)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5) as r:
            rows = csv.DictReader(io.StringIO(r.read().decode().lstrip("# ")))
            return {row["svname"]: row["status"].split()[0] for row in rows if row["pxname"] == "workers"
                    and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_status(self, want: dict[str, str], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"haproxy exited {self.proc.returncode}"
            with contextlib.suppress(OSError):
                status = self.status()
                if all(status.get(k) == v for k, v in want.items()):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not see {want} in {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HAProxy, list[ServeProcess]]]:
    with contextlib.ExitStack() as stack:
        workers = [stack.enter_context(ServeProcess(
            tmp_path_factory.mktemp(f"w{i}"), SCENARIO, "--max-conversations", str(PER_WORKER),
            "--drain-timeout", "30")) for i in range(WORKERS)]
        for worker in workers:
            worker.wait_ready()
        lb = HAProxy(tmp_path_factory.mktemp("lb"), [w.port for w in workers])
        stack.callback(lb.stop)
        lb.wait_status({f"w{i}": "UP" for i in range(WORKERS)})
        yield lb, workers


def sid(n: int) -> str:
    return f"CA{n:032d}"


def worker_of(workers: list[ServeProcess], call_sid: str) -> int:
    """Which worker took the call (its log says `call SID: stream ... started`)."""
    took = [i for i, w in enumerate(workers) if f"call {call_sid}: stream" in w.stderr()]
    assert len(took) == 1, f"{call_sid} reached workers {took}"
    return took[0]


async def _wait_logged(workers: list[ServeProcess], call_sids: list[str], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(any(f"call {s}: stream" in w.stderr() for w in workers) for s in call_sids):
        assert time.monotonic() < deadline, f"not all of {call_sids} started in {timeout_s} s"
        await asyncio.sleep(0.05)


async def _hold(url: str, call_sid: str, release: asyncio.Event) -> int | None:
    """A silent call that stays until `release`, then hangs up: its close code."""
    async with TwilioCaller(url, call_sid=call_sid) as caller:
        talking = asyncio.create_task(caller.speak(b"", then_silence_s=60))
        await release.wait()
        talking.cancel()
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        return caller.heard.close_code


async def _refused(url: str, call_sid: str) -> str:
    """How a caller beyond capacity is turned away: 'http 503' or 'ws 1013'."""
    try:
        async with TwilioCaller(url, call_sid=call_sid) as caller:
            await caller.wait_for(lambda h: h.close_code is not None, 5)
            return f"ws {caller.heard.close_code} after {caller.heard.media_frames} media frames"
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"


def test_a_caller_beyond_the_pool_capacity_is_refused(pool: tuple[HAProxy, list[ServeProcess]]) -> None:
    lb, workers = pool
    url = f"ws://127.0.0.1:{lb.port}/twilio/stream"
    total = WORKERS * PER_WORKER

    async def scenario() -> tuple[list[int | None], str, str]:
        release = asyncio.Event()
        holders = []
        for n in range(total):
            holders.append(asyncio.create_task(_hold(url, sid(100 + n), release)))
            await asyncio.sleep(0.1)
        await _wait_logged(workers, [sid(100 + n) for n in range(total)])
        # Every worker is full: the health checks take them all out of the pool.
        await asyncio.to_thread(lb.wait_status, {f"w{i}": "DOWN" for i in range(WORKERS)})
        refused_at_lb = await _refused(url, sid(199))
        release.set()
        codes = await asyncio.gather(*holders)
        await asyncio.to_thread(lb.wait_status, {f"w{i}": "UP" for i in range(WORKERS)})
        return list(codes), refused_at_lb, await _refused_by_worker()

    async def _refused_by_worker() -> str:
        # A worker the check has not seen full yet refuses the extra call itself (1013), never degrades it.
        release = asyncio.Event()
        direct = f"ws://127.0.0.1:{workers[0].port}/twilio/stream"
        holders = [asyncio.create_task(_hold(direct, sid(150 + n), release)) for n in range(PER_WORKER)]
        await _wait_logged(workers, [sid(150 + n) for n in range(PER_WORKER)])
        refused = await _refused(direct, sid(198))
        release.set()
        await asyncio.gather(*holders)
        return refused

    codes, at_lb, at_worker = asyncio.run(scenario())
    assert codes == [1000] * total
    assert at_lb == "http 503"
    assert at_worker == "ws 1013 after 0 media frames"
    spread = [worker_of(workers, sid(100 + n)) for n in range(total)]
    assert sorted(spread) == sorted(list(range(WORKERS)) * PER_WORKER), spread
    assert not any(f"call {sid(199)}" in w.stderr() for w in workers)
    assert sum(w.metric("agent_run_refused_callers_total") for w in workers) >= 1
    for worker in workers:
        worker.wait_ready(5)
    lb.wait_status({f"w{i}": "UP" for i in range(WORKERS)})


async def _orders_call(url: str, call_sid: str) -> int | None:
    """A caller asks where the order is, hears the whole answer, then hangs up: the close code."""
    question = wav_as_ulaw(SAMPLES / "where_is_my_order.wav")
    async with TwilioCaller(url, call_sid=call_sid) as caller:
        speaking = asyncio.create_task(caller.speak(question, then_silence_s=40))
        await caller.wait_answer_arrived(25)
        await caller.hang_up()
        await caller.wait_for(lambda h: h.close_code is not None, 10)
        speaking.cancel()
        return caller.heard.close_code


def test_sigterm_one_worker_under_load(pool: tuple[HAProxy, list[ServeProcess]]) -> None:
    lb, workers = pool
    url = f"ws://127.0.0.1:{lb.port}/twilio/stream"
    before = [set(w.transcripts.glob("*.jsonl")) for w in workers]
    first = [sid(200 + n) for n in range(WORKERS)]
    later = [sid(300 + n) for n in range(2)]

    async def scenario() -> tuple[list[int | None], int]:
        calls = []
        for call_sid in first:  # one call on each worker (leastconn)
            calls.append(asyncio.create_task(_orders_call(url, call_sid)))
            await asyncio.sleep(0.2)
        await _wait_logged(workers, first)
        victim = worker_of(workers, first[0])
        await asyncio.sleep(1.0)  # mid-call: the question is being spoken
        workers[victim].proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(lb.wait_status, {f"w{victim}": "DOWN"}, 5)
        assert workers[victim].proc.poll() is None, "the draining worker quit with a call live"
        for call_sid in later:  # new calls while it drains
            calls.append(asyncio.create_task(_orders_call(url, call_sid)))
            await asyncio.sleep(0.2)
        codes = await asyncio.gather(*calls)
        return list(codes), victim

    codes, victim = asyncio.run(scenario())
    # Every call was ended by its caller (the transcripts below say so), none cut by the drain: the
    # draining worker too closes a hung-up call normally (1001 is only for a call the drain ended).
    assert codes == [1000] * len(codes)
    assert workers[victim].proc.wait(timeout=10) == 143  # the drained worker exits once its calls end
    assert sorted(worker_of(workers, s) for s in first) == list(range(WORKERS))
    assert all(worker_of(workers, s) != victim for s in later)

    for i, worker in enumerate(workers):
        worker.transcripts_done(len(list(worker.transcripts.glob("*.jsonl"))), 20)  # all have ended
        entries = [[json.loads(line) for line in f.read_text().splitlines() if line.strip()]
                   for f in sorted(set(worker.transcripts.glob("*.jsonl")) - before[i])]
        expected = 1 + sum(worker_of(workers, s) == i for s in later)
        assert len(entries) == expected, (i, len(entries), expected)
        for transcript in entries:
            assert transcript[-1]["event"] == "end" and transcript[-1]["reason"] == "caller hung up"
            said = [e["text"] for e in transcript if e["type"] == "assistant"]
            assert "Your order 12345 is delivered." in said, transcript
            tools = [e["name"] for e in transcript if e["type"] == "tool_call"]
            assert tools == ["trackOrderTool"]
