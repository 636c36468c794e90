"""`agent-run doctor [AGENT.yaml]`: check what a run needs and say how to fix each problem."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from runner.doctor import DoctorOptions, diagnose, exit_code, format_report, readiness

EPILOG = """\
Checks: Python, the Bedrock SDK (and awscrt), AWS region and credentials (where they come from;
secrets are never printed), Bedrock reachability and model access, audio devices, espeak-ng, and
the agent file when given. Each line is ok / warn / fail / skipped; every other than ok has a fix.
Exit status 1 when any check failed (warnings allowed).

With --emulate the question is "can I work offline?": the built-in emulator is started and a real
stream runs through the SDK to it. Missing AWS credentials, region or model access are then
warnings, not failures, and the last line says what a run against real Bedrock would still need.
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor", help="check Python, SDK, AWS credentials, Bedrock access, audio and espeak-ng",
        description="Check what a run needs and say how to fix each problem.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", nargs="?", type=Path, metavar="AGENT.yaml",
                   help="also check this agent file, its region, endpoint and model")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--offline", action="store_true",
                   help="do not contact Bedrock (the reachability check is skipped)")
    p.add_argument("--emulate", action="store_true",
                   help="check readiness for offline work: also run a real stream through the SDK "
                        "against the built-in emulator; what only real Bedrock needs only warns")
    p.add_argument("--profile", help="AWS profile to check (default: AWS_PROFILE, else default)")


def run(args: argparse.Namespace) -> int:
    options = DoctorOptions(agent=args.agent, offline=args.offline, emulate=args.emulate,
                            profile=args.profile)
    results = asyncio.run(diagnose(options))
    code = exit_code(results)
    if args.json:
        verdict = readiness(results, args.emulate)
        print(json.dumps({**verdict, "checks": [r.to_json() for r in results]}, indent=2))
    else:
        print(format_report(results, emulate=args.emulate))
    return code
