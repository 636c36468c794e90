"""`agent-run serve AGENT.yaml`: the agent for callers (browser page, WebSocket), many at once."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from runner.commands.argtypes import port, positive_int, seconds
from runner.config.loader import load_agent
from runner.config.overrides import add_var_option, var_overrides
from runner.console import Console
from runner.tools.http import missing_env_refusal

EPILOG = """\
examples:
  agent-run serve agents/orders.yaml --emulate       then open http://127.0.0.1:8080/
  AGENT_RUN_SERVE_TOKEN=s3cret agent-run serve agents/orders.yaml --host 0.0.0.0 --transcripts -

Endpoints: / (the page), /ws (one conversation per WebSocket; protocol in the README), /ping
(AgentCore health: Healthy / HealthyBusy), /readyz (503 while full or draining), /metrics
(Prometheus), /twilio/voice and /twilio/stream (phone calls through Twilio Media Streams). Callers
must present the token (?token=... or Authorization: Bearer) whenever one is set; a server on
another address than loopback refuses to start without one (or --no-auth).

SIGTERM, SIGINT or SIGHUP drain: new callers are refused, live conversations go on for up to
--drain-timeout seconds, then each is ended in order with its transcript closed; exit status
128 + the signal (143 for SIGTERM). A second signal ends them at once.
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve the agent to callers: a browser page and a WebSocket, many calls at once",
        description="Serve a voice agent over HTTP/WebSocket: one conversation per connected caller.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agent", type=Path, help="the agent YAML file")
    add_var_option(p)
    p.add_argument("--emulate", nargs="?", const="", default=None, metavar="SCENARIO",
                   help="serve every conversation from one built-in local emulator (optionally a scenario)")
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                     "0.0.0.0 in a container)")
    net.add_argument("--port", type=port, default=8080, help="TCP port (default 8080)")
    net.add_argument("--token", help=f"callers must present this token (default: ${_token_env()}; the "
                     "environment keeps it out of the process list)")
    net.add_argument("--no-auth", action="store_true",
                     help="serve callers on a non-loopback address without a token (behind your own auth)")
    net.add_argument("--twilio-auth-token", metavar="TOKEN",
                     help="check X-Twilio-Signature on /twilio/voice and /twilio/stream with the "
                     "account's auth token (default: $TWILIO_AUTH_TOKEN, which keeps it out of the "
                     "process list)")
    cap = p.add_argument_group("capacity")
    cap.add_argument("--max-conversations", type=positive_int, default=20, metavar="N",
                     help="live conversations at most; past it new callers are refused (default 20)")
    cap.add_argument("--drain-timeout", type=seconds(allow_zero=True), default=30.0, metavar="SECONDS",
                     help="on SIGTERM, how long live conversations may go on (default 30)")
    p.add_argument("--transcripts", metavar="DIR|-",
                   help="one transcript file per conversation in DIR, or `-` for JSON lines on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the server's log")
    p.set_defaults(run_parser=p)


def run(args: argparse.Namespace) -> int:
    from runner.allocator import limit_malloc_arenas
    from runner.serve.auth import check_bind
    from runner.serve.context import ServeContext, ServeSettings

    # Many conversations, one after another, over threads (tools, the SDK's, Whisper's): keep the
    # C allocator's footprint flat (runner.allocator), before any thread starts.
    limit_malloc_arenas()
    token = args.token or os.environ.get(_token_env()) or None
    check_bind(args.host, token, no_auth=args.no_auth)
    overrides = var_overrides(args)
    agent = load_agent(args.agent, overrides)
    refusal = missing_env_refusal(agent)  # HTTP tools' ${env:NAME} secrets: refuse before serving anyone
    if refusal is not None:
        print(f"agent-run: error: {refusal}", file=sys.stderr)
        return 2
    stdout = args.transcripts == "-"
    settings = ServeSettings(
        host=args.host, port=args.port, token=token, max_conversations=args.max_conversations,
        drain_timeout_s=args.drain_timeout, transcripts=None if stdout or not args.transcripts
        else Path(args.transcripts), stdout_transcripts=stdout, emulate=args.emulate is not None,
        scenario=Path(args.emulate) if args.emulate else None, var_overrides=tuple(overrides.items()),
        twilio_auth_token=args.twilio_auth_token or os.environ.get("TWILIO_AUTH_TOKEN") or None)
    if args.verbose:
        import logging
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    console = Console(stream=sys.stderr)  # stdout may carry the transcripts
    return asyncio.run(_serve(ServeContext(agent, settings), console))


async def _serve(ctx: Any, console: Console) -> int:
    from runner.engine import RunOptions, connect
    from runner.serve.app import build_app
    from runner.serve.server import listen, serve

    settings = ctx.settings
    sock = listen(settings.host, settings.port)
    options = RunOptions(emulate=settings.emulate, scenario=settings.scenario)
    with contextlib.closing(sock):
        async with connect(ctx.agent, options, console, None) as connector:
            ctx.connector = ctx.metrics.metered(connector)
            host, bound_port = sock.getsockname()[:2]
            console.info(f"serving {ctx.agent.name} on http://{_url_host(host)}:{bound_port}/ "
                         f"(WebSocket /ws; at most {settings.max_conversations} conversations)")
            code: int = await serve(ctx, build_app(ctx), sock, console)
    console.info("server stopped")
    return code


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _token_env() -> str:
    from runner.serve.auth import TOKEN_ENV

    return TOKEN_ENV


