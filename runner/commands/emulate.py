"""`agent-run emulate`: serve a local Nova Sonic emulator that any Bedrock client can use."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from runner.emulator.local import local_emulator

EPILOG = """\
The first lines printed are shell exports; paste them (or `eval` them) in the client's shell:
  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://127.0.0.1:PORT
  export SSL_CERT_FILE=/path/to/emulator-ca.pem
  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=us-east-1
Then every event received and sent is logged. Stop with Ctrl-C.
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "emulate", help="serve a local Nova Sonic emulator (HTTP/2 + TLS, real event-stream wire format)",
        description="Serve Bedrock's InvokeModelWithBidirectionalStream locally, behaving like Nova Sonic "
                    "from a scripted scenario.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", type=Path, help="scenario YAML scripting the model, turn by turn")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    p.add_argument("--region", default="us-east-1", help="region clients must sign for (default us-east-1)")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="per-stream time limit (default 480, as Nova Sonic's 8 minutes)")
    p.add_argument("--input-timeout", type=float, metavar="SECONDS",
                   help="end a stream that receives no input for this long (default 60)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not log events")
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


def run(args: argparse.Namespace) -> int:
    if not args.quiet:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
        logger = logging.getLogger("runner.emulator")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with local_emulator(args.scenario, host=args.host, port=args.port, region=args.region,
                              time_limit_s=args.time_limit, input_timeout_s=args.input_timeout,
                              hostnames=args.hostname, state_dir=args.state_dir,
                              any_credentials=args.any_credentials) as emu:
        for line in emu.export_lines():
            print(line)
        print(f"# agent-run emulator listening on {emu.endpoint}; Ctrl-C to stop", flush=True)
        await stop.wait()
    print("# emulator stopped", flush=True)
    return 0
