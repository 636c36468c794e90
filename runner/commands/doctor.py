"""`agent-run doctor [AGENT.yaml]`: check what a run needs and say how to fix each problem."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from runner.doctor import DoctorOptions, diagnose, exit_code, format_report

EPILOG = """\
Checks: Python, the Bedrock SDK (and awscrt), AWS region and credentials (where they come from;
secrets are never printed), Bedrock reachability and model access, audio devices, espeak-ng, and
the agent file when given. Each line is ok / warn / fail / skipped; every other than ok has a fix.
Exit status 1 when any check failed (warnings allowed).
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
                   help="also run a real stream through the SDK against the built-in emulator")
    p.add_argument("--profile", help="AWS profile to check (default: AWS_PROFILE, else default)")


def run(args: argparse.Namespace) -> int:
    options = DoctorOptions(agent=args.agent, offline=args.offline, emulate=args.emulate,
                            profile=args.profile)
    results = asyncio.run(diagnose(options))
    code = exit_code(results)
    if args.json:
        print(json.dumps({"ok": code == 0, "checks": [r.to_json() for r in results]}, indent=2))
    else:
        print(format_report(results))
    return code
