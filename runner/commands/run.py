"""`agent-run [run] AGENT.yaml`: talk to an agent (microphone and speakers, or WAV files)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from runner.commands.argtypes import seconds
from runner.config.loader import load_agent
from runner.config.overrides import add_var_option, var_overrides
from runner.config.secrets import unset_refusal
from runner.console import Console
from runner.engine import RunOptions, run_agent, text_mode_refusal
from runner.models import is_nova2
from runner.telemetry import shutdown as telemetry_shutdown
from runner.telemetry.prices import price_table
from runner.tools.mcp import McpStartError

EPILOG = """\
examples:
  agent-run agents/orders.yaml                      talk through the default microphone and speakers
  agent-run agents/orders.yaml --emulate samples/orders.scenario.yaml \\
      --input samples/where_is_my_order.wav --output out/answer.wav --transcript out/t.jsonl
                                                    offline: a recorded question, answer to a WAV file
  agent-run agents/concierge.yaml --var city=Paris  override a template variable
  agent-run agents/orders.yaml --text --emulate samples/orders.scenario.yaml
                                                    type to the agent instead of speaking
  printf 'Where is my order 12345?\\n' | agent-run agents/orders.yaml --text --mute --emulate
                                                    a scripted typed conversation, no sound

AWS settings come from the agent file (model.region, model.endpoint), then the usual AWS
environment variables and profiles. With --emulate, the built-in Nova Sonic emulator is started
in-process and reached over TLS through the same SDK code path; no AWS account is needed.
With --input, the run ends by itself once the file has been played and the conversation is idle.

With --text (Nova 2 models), what you type goes to the model as text: at a terminal each line is
sent when you press Enter (typing while the assistant speaks interrupts it, under the barge-in
policy); lines piped on stdin take turns, each after the answer to the one before. The
assistant's words are printed and its speech played (or written with --output, or dropped with
--mute). No microphone is opened: silence is streamed, as a voice session needs. End of input
(Ctrl-D, the end of the pipe) ends the run once the conversation is idle.

Ctrl-C, SIGTERM and SIGHUP end the session in order within two seconds, whatever a tool is doing;
exit status 130, 143 and 129. An output that cannot be written (a full disk) stops the run with an
error and exit 1, the WAV kept valid; if stdout is closed, the run goes on without printing.
--output, --transcript and --input must name different files.

Latency, cost and tracing: each turn is measured (end of speech -> first assistant audio and ->
first sample played, tool time, stream set-up, tokens and their estimated cost) into the
transcript's `turn` entries and, with -v, a line per turn; the run ends with a summary (p50/p95
per figure, total tokens and cost). Prices: a built-in table, or AGENT_RUN_PRICES=FILE (YAML or
JSON, USD per 1,000 tokens per model id). OpenTelemetry traces and metrics (the `otel` extra) are
exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER=otlp) is set.

A run refuses to start (exit 2) while an environment variable that an HTTP tool or an MCP server
references (${env:NAME}) is unset, naming each variable and each place it is written (FILE:LINE:COL;
`serve` and `test` refuse alike); `agent-run check` warns about each. It stops with exit 2 too when
one of the agent's MCP servers cannot be started (`agent-run check --connect` tries them).
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run an agent (the default command: `agent-run AGENT.yaml`)",
        description="Run a voice agent defined in a YAML file.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", type=Path, help="the agent YAML file")
    add_var_option(p)
    p.add_argument("--emulate", nargs="?", const="", default=None, metavar="SCENARIO",
                   help="use the built-in local emulator (optionally playing a scenario YAML)")
    p.add_argument("--time-limit", type=seconds(), metavar="SECONDS",
                   help="with --emulate: the emulator's per-stream time limit (default 480)")
    audio = p.add_argument_group("audio")
    audio.add_argument("--input", type=Path, metavar="WAV",
                       help="read the user's speech from a WAV file (paced in real time, then silence)")
    audio.add_argument("--output", type=Path, metavar="WAV",
                       help="write the assistant's speech to a WAV file instead of the speakers")
    audio.add_argument("--text", action="store_true",
                       help="type to the agent instead of speaking: lines from the terminal or stdin go to "
                            "the model as text (Nova 2); no microphone is opened")
    audio.add_argument("--mute", action="store_true",
                       help="do not play the assistant's speech (its words are still printed)")
    audio.add_argument("--input-device", metavar="DEVICE",
                       help="microphone index or name (agent-run devices)")
    audio.add_argument("--output-device", metavar="DEVICE", help="speaker index or name (agent-run devices)")
    out = p.add_argument_group("output")
    out.add_argument("--transcript", type=Path, metavar="FILE.jsonl",
                     help="append the conversation as JSON lines while it happens")
    out.add_argument("--record", type=Path, metavar="DIR",
                     help="record the session into DIR (created if needed; a recording there is replaced): "
                          "every event sent and received with its time (events.jsonl), a stereo WAV (user "
                          "left, assistant right), the user's audio as sent (user.wav) and the transcript; "
                          "`agent-run emulate --replay DIR` plays the model's side back")
    out.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="also print the runner's own events: every event sent and received, audio summed "
                          "up, a line per turn (latency, tokens, estimated cost), and the runner's log")
    out.add_argument("--debug", action="store_true",
                     help="-v plus every audio chunk, and the logs of the AWS SDK, HTTP/2 and the emulator "
                          "(on stderr; thousands of lines a minute)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-duration", type=seconds(), metavar="SECONDS",
                        help="end the run after this long, at once (seconds > 0); an agent's smaller "
                             "session.max_duration_s ends it first, with its closing line")
    limits.add_argument("--idle-exit", type=seconds(allow_zero=True), metavar="SECONDS",
                        help="with --input or --text: end after the file has played (or the typed input "
                             "ended) and nothing happened for this long (default 2.5; 0 or more)")
    p.add_argument("--profile", help="AWS profile to use (default: AWS_PROFILE or the default chain)")
    p.set_defaults(run_parser=p)


def run(args: argparse.Namespace) -> int:
    if args.time_limit is not None and args.emulate is None:
        args.run_parser.error("--time-limit only applies with --emulate (the emulator's stream limit)")
    _check_modes(args)
    agent = load_agent(args.agent, var_overrides(args))
    # HTTP tools' and MCP servers' ${env:NAME} secrets: refuse before anything starts.
    if (refusal := unset_refusal(agent.env_uses)) is not None:
        print(f"agent-run: error: {refusal}", file=sys.stderr)
        return 2
    if args.text and not is_nova2(agent.model.id):
        args.run_parser.error(text_mode_refusal(agent))
    options = RunOptions(
        input_file=args.input, output_file=args.output, input_device=args.input_device,
        output_device=args.output_device, transcript=args.transcript,
        emulate=args.emulate is not None, scenario=Path(args.emulate) if args.emulate else None,
        emulator_time_limit_s=args.time_limit, max_duration_s=args.max_duration,
        idle_exit_s=args.idle_exit, profile=args.profile, record=args.record, text=args.text,
        mute=args.mute)
    price_table()  # a bad AGENT_RUN_PRICES file is an error before anything connects
    _configure_logging(verbose=args.verbose, debug=args.debug)
    console = Console(quiet=args.quiet, verbose=args.verbose, debug=args.debug)
    try:
        return asyncio.run(run_agent(agent, options, console))
    except McpStartError as exc:  # refused like a missing variable: nothing was said to the model yet
        print(f"agent-run: error: {exc}", file=sys.stderr)
        return 2
    finally:
        telemetry_shutdown()  # OpenTelemetry (when configured): export what is left, bounded


def _check_modes(args: argparse.Namespace) -> None:
    """Options that contradict each other are a usage error (exit 2), before anything is loaded."""
    clashes = [("--text", args.text, "--input", args.input is not None),
               ("--text", args.text, "--input-device", args.input_device is not None),
               ("--mute", args.mute, "--output", args.output is not None),
               ("--mute", args.mute, "--output-device", args.output_device is not None)]
    for flag, given, other, other_given in clashes:
        if given and other_given:
            args.run_parser.error(f"{flag} and {other} cannot be used together")


def _configure_logging(*, verbose: bool, debug: bool) -> None:
    """-v: the runner's own log; --debug: every library's too (SDK, awscrt, h2/hpack, emulator)."""
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    elif verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        runner_log = logging.getLogger("runner")
        runner_log.addHandler(handler)
        runner_log.setLevel(logging.DEBUG)
        # The in-process emulator logs every event it serves: that is --debug material.
        logging.getLogger("runner.emulator").setLevel(logging.WARNING)
