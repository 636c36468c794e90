"""`agent-run emulate`: serve a local Nova Sonic emulator that any Bedrock client can use."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.allocator import limit_malloc_arenas
from runner.commands.argtypes import port, seconds
from runner.emulator.local import local_emulator
from runner.errors import RunnerError

EPILOG = """\
Output: the first three lines printed are always the shell exports a client needs, then a
`# agent-run emulator listening on ...` line; without -q the event log follows (one line per
event; audio is summarised, one line per audio content block):
  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://127.0.0.1:PORT
  export SSL_CERT_FILE=/path/to/emulator-ca.pem
  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=us-east-1
Paste them into the client's shell. The emulator keeps running, so `eval "$(agent-run emulate)"`
would never return; from a script, let it write the exports to a file and source that:
  agent-run emulate -q --env-file emulator.env &
  until [ -f emulator.env ]; do sleep 0.1; done; . ./emulator.env
The file appears (complete, mode 0600) once the emulator listens and is removed when it stops.
If stdout is closed (`| head -4`), it keeps serving without output.
With --replay DIR it serves a recording (agent-run AGENT --record DIR) and prints the first
difference from it as a `# replay: ...` line, even with -q.
Stop with Ctrl-C (or SIGTERM/SIGHUP). Exit status: 0 after a stop, 1 when it cannot start
(a scenario with errors, an address that cannot be bound), 2 for a bad option.
"""



def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "emulate", help="serve a local Nova Sonic emulator (HTTP/2 + TLS, real event-stream wire format)",
        description="Serve Bedrock's InvokeModelWithBidirectionalStream locally, behaving like Nova Sonic\n"
                    "from a scripted scenario. Each new stream starts the scenario from its first turn;\n"
                    "a stream that replays an earlier conversation's history resumes that conversation.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", type=Path, help="scenario YAML scripting the model: turns played in order, "
                                                 "or chosen by what the user said (`when:` words or a regex, "
                                                 "with `fallback:` for anything else); checked at start, "
                                                 "every problem reported")
    p.add_argument("--replay", type=Path, metavar="DIR",
                   help="serve the model's side of a recording (agent-run AGENT --record DIR) instead of a "
                        "scenario: the recorded outputs follow the live runner's inputs, and the first input "
                        "that differs from the recording (another tool result, a missing event) is printed "
                        "and fails the stream with a validationException naming it")
    p.add_argument("--ignore", action="append", default=[], metavar="PATH",
                   help="with --replay: an input event field not to compare, as EVENT.FIELD... with * "
                        "wildcards, e.g. toolResult.content.formattedTime (a value that changes between "
                        "runs); repeatable")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=0, help="port, 0-65535 (default 0: a free port)")
    p.add_argument("--region", default="us-east-1", help="region clients must sign for (default us-east-1)")
    p.add_argument("--time-limit", type=seconds(), metavar="SECONDS",
                   help="per-stream time limit (default 480, as Nova Sonic's 8 minutes)")
    p.add_argument("--input-timeout", type=seconds(), metavar="SECONDS",
                   help="end a stream that receives no input for this long (default 60)")
    p.add_argument("--env-file", type=Path, metavar="PATH",
                   help="also write the export lines to PATH once listening (removed on exit)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="do not log events: print only the export lines and the listening "
                        "and stopped lines")
    p.add_argument("--any-credentials", action="store_true",
                   help="accept requests signed with any AWS keys (still well-formed SigV4 for --region); "
                        "by default only the printed keys are accepted and signatures are checked")
    p.add_argument("--hostname", action="append", default=[], metavar="NAME",
                   help="a name the certificate also covers; the first is used in the printed endpoint. "
                        "For clients that build https://bedrock-runtime.REGION.amazonaws.com themselves: "
                        "--hostname bedrock-runtime.us-east-1.amazonaws.com --port 443, and map that name "
                        "to 127.0.0.1 (see README, The emulator)")
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="folder keeping the emulator's CA and keys between runs, so the printed "
                        "exports stay valid after a restart (with the same --port); default "
                        "$AGENT_RUN_EMULATOR_DIR, else $XDG_CACHE_HOME/agent-run/emulator or "
                        "~/.cache/agent-run/emulator")
    p.add_argument("--asr", choices=("whisper", "none"), default=None,
                   help="how the emulator hears speech: whisper transcribes it offline (needs "
                        "pip install 'nova-agent-runner[asr]'), none uses the scenario's `user:` text; "
                        "default $AGENT_RUN_EMULATOR_ASR, else whisper when installed")
    p.set_defaults(emulate_parser=p)


def run(args: argparse.Namespace) -> int:
    if args.replay is not None and args.scenario is not None:
        args.emulate_parser.error("--replay and --scenario exclude each other (a replay is its own script)")
    if args.ignore and args.replay is None:
        args.emulate_parser.error("--ignore only applies with --replay")
    if args.time_limit is not None and args.replay is not None:
        args.emulate_parser.error("--time-limit does not apply with --replay (streams end as recorded)")
    # A long-lived server of any number of streams, Whisper among its threads: keep the C
    # allocator's footprint flat (runner.allocator), before any thread starts.
    limit_malloc_arenas()
    # A broken scenario (ConfigError) or an address that cannot be bound (ListenError) ends the
    # command with its message and exit 1, before anything is printed.
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    async with local_emulator(args.scenario, host=args.host, port=args.port, region=args.region,
                              time_limit_s=args.time_limit, input_timeout_s=args.input_timeout,
                              hostnames=args.hostname, state_dir=args.state_dir,
                              any_credentials=args.any_credentials, replay=args.replay,
                              report=_report, replay_ignore=args.ignore, asr=args.asr) as emu:
        lines = emu.export_lines()
        with _env_file(args.env_file, lines):
            # The exports come first, before any log line, so a client can read the first lines.
            _say(*lines, f"# agent-run emulator listening on {emu.endpoint}; Ctrl-C to stop")
            if not args.quiet:
                _log_events()
            await stop.wait()
    _say("# emulator stopped")
    return 0


def _report(difference: str) -> None:
    """A replay's difference is printed even with -q: it is what the user is waiting for."""
    _say(f"# {difference}")


def _say(*lines: str) -> None:
    """Print to stdout; once stdout is gone (`| head -3` exited, a full disk), go on serving
    without output rather than fail: the emulator is still useful to its clients."""
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except OSError:
        _drop_stdout()


def _drop_stdout() -> None:
    # Point the file descriptor at /dev/null so that no later write (nor the flush at exit) fails.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def handleError(self, record: logging.LogRecord) -> None:
        # The default prints a traceback to stderr for every record once stdout is gone.
        _drop_stdout()


def _log_events() -> None:
    handler = _LogHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("runner.emulator")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@contextlib.contextmanager
def _env_file(path: Path | None, lines: list[str]) -> Iterator[None]:
    """Write `lines` to `path` atomically (readers never see half a file), mode 0600 (it holds
    the secret key); remove it when the emulator stops."""
    if path is None:
        yield
        return
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(temp, path)
    except OSError as exc:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        reason = (exc.strerror or str(exc)).lower()
        raise RunnerError(f"--env-file {path}: cannot write it: {reason}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
