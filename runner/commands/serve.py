"""`agent-run serve AGENT.yaml [MORE.yaml ...]`: agents for callers (browser page, WebSocket, phone,
AgentCore invocations), many conversations at once."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.commands.argtypes import port, positive_int, seconds
from runner.config.loader import load_agent
from runner.config.overrides import parse_var, var_overrides
from runner.config.secrets import unset_refusal
from runner.console import Console
from runner.telemetry import shutdown as telemetry_shutdown
from runner.telemetry.prices import price_table
from runner.tools.mcp import McpStartError

if TYPE_CHECKING:
    from runner.config.model import AgentConfig

EPILOG = """\
examples:
  agent-run serve agents/orders.yaml --emulate       then open http://127.0.0.1:8080/
  agent-run serve agents/orders.yaml agents/concierge.yaml --emulate     two agents, one server
  AGENT_RUN_SERVE_TOKEN=s3cret agent-run serve agents/orders.yaml --host 0.0.0.0 --transcripts -

Several agents: each is served under its file's `name:` (names must differ); callers pick one with
?agent=NAME (/ws, /twilio/voice) or "agent" (/invocations); the first file's is the default.
--max-conversations is the worker's, across its agents. Give the agent files before the options
(--emulate takes an optional SCENARIO after it).

Endpoints: / (the page), /ws (one conversation per WebSocket; protocol in the README; an unknown
?agent= is closed with 4404), /agents (the agents served, JSON), /invocations (AgentCore: POST
{"prompt": ...}, one typed turn answered as JSON, or as server-sent events with Accept:
text/event-stream; Nova 2 agents), /ping (AgentCore health: Healthy / HealthyBusy and
time_of_last_update), /readyz (503 while full or draining), /metrics (Prometheus), /twilio/voice
and /twilio/stream (phone calls through Twilio Media Streams). Callers must present the token
(?token=... or Authorization: Bearer) whenever one is set; a server on another address than
loopback refuses to start without one (or --no-auth). It refuses to start (exit 2) too while an
environment variable that an agent's HTTP tools or MCP servers reference (${env:NAME}) is unset,
naming each variable and where it is written, as `agent-run AGENT` does.

SIGTERM, SIGINT or SIGHUP drain: new callers are refused, live conversations go on for up to
--drain-timeout seconds, then each is ended in order with its transcript closed; exit status
128 + the signal (143 for SIGTERM). A second signal ends them at once.
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve the agent to callers: a browser page and a WebSocket, many calls at once",
        description="Serve voice agents over HTTP/WebSocket: one conversation per connected caller.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agents", type=Path, nargs="+", metavar="AGENT.yaml",
                   help="the agent YAML file(s); the first is the default agent")
    p.add_argument("--var", dest="vars", metavar="NAME=VALUE", type=parse_var, action="append", default=[],
                   help="override a variable declared under `vars:` (repeatable), in every agent served "
                   "that declares it (an error if none does); converted to the type of its default")
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
    net.add_argument("--forwarded-allow-ips", default="127.0.0.1", metavar="ADDRESSES",
                     help="believe X-Forwarded-Proto/-Host/-For only from these proxies (comma-separated "
                     "addresses or networks, * for any; default 127.0.0.1): they set the public URL of "
                     "Twilio's stream and its signature check")
    net.add_argument("--twilio-auth-token", metavar="TOKEN",
                     help="check X-Twilio-Signature on /twilio/voice and /twilio/stream with the "
                     "account's auth token (default: $TWILIO_AUTH_TOKEN, which keeps it out of the "
                     "process list)")
    cap = p.add_argument_group("capacity")
    cap.add_argument("--max-conversations", type=positive_int, default=20, metavar="N",
                     help="live conversations at most; past it new callers are refused (default 20)")
    cap.add_argument("--invocation-timeout", type=seconds(), default=60.0, metavar="SECONDS",
                     help="POST /invocations: how long one turn may take before it is ended with an "
                     "error (default 60)")
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
    from runner.serve.forwarded import TrustedProxies

    check_bind(args.host, token, no_auth=args.no_auth)
    TrustedProxies.parse(args.forwarded_allow_ips)  # a typo is a clear error now, not at a first call
    overrides = var_overrides(args)
    agents = _load_agents(args.agents, overrides)
    if (clash := _name_clash(agents)) is not None:
        args.run_parser.error(clash)  # exit 2, like any mistake on the command line
    # HTTP tools' and MCP servers' ${env:NAME} secrets, every agent's at once: refuse before serving anyone.
    if (refusal := unset_refusal(use for agent in agents for use in agent.env_uses)) is not None:
        print(f"agent-run: error: {refusal}", file=sys.stderr)
        return 2
    price_table()  # a bad AGENT_RUN_PRICES file is an error at start, not in every conversation
    stdout = args.transcripts == "-"
    settings = ServeSettings(
        host=args.host, port=args.port, token=token, max_conversations=args.max_conversations,
        drain_timeout_s=args.drain_timeout, transcripts=None if stdout or not args.transcripts
        else Path(args.transcripts), stdout_transcripts=stdout, emulate=args.emulate is not None,
        scenario=Path(args.emulate) if args.emulate else None, var_overrides=tuple(overrides.items()),
        twilio_auth_token=args.twilio_auth_token or os.environ.get("TWILIO_AUTH_TOKEN") or None,
        forwarded_allow_ips=tuple(args.forwarded_allow_ips.split(",")),
        invocation_timeout_s=args.invocation_timeout)
    if args.verbose:
        import logging
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    console = Console(stream=sys.stderr)  # stdout may carry the transcripts
    try:
        return asyncio.run(_serve(ServeContext(agents, settings), console))
    except McpStartError as exc:  # refused like a missing variable, before any caller was admitted
        print(f"agent-run: error: {exc}", file=sys.stderr)
        return 2
    finally:
        telemetry_shutdown()  # OpenTelemetry (when configured): export what is left, bounded


def _load_agents(paths: list[Path], overrides: dict[str, str]) -> list[AgentConfig]:
    """Each agent with the `--var`s it declares; a `--var` no agent declares is the loader's error."""
    if len(paths) == 1:
        return [load_agent(paths[0], overrides)]
    agents = []
    for path in paths:
        agent = load_agent(path)
        mine = {k: v for k, v in overrides.items() if k in agent.vars}
        agents.append(load_agent(path, mine) if mine else agent)
    unused = {k: v for k, v in overrides.items() if not any(k in a.vars for a in agents)}
    if unused:
        load_agent(paths[0], unused)  # raises, naming the variable and what is declared
    return agents


def _name_clash(agents: list[AgentConfig]) -> str | None:
    seen: dict[str, AgentConfig] = {}
    for agent in agents:
        if (first := seen.get(agent.name)) is not None:
            return (f"{first.path} and {agent.path} are both named {agent.name!r}: callers pick an agent "
                    "by its name, so give each a different `name:`")
        seen[agent.name] = agent
    return None


async def _serve(ctx: Any, console: Console) -> int:
    from runner.engine import RunOptions, connect
    from runner.serve.app import build_app
    from runner.serve.server import listen, serve

    settings = ctx.settings
    sock = listen(settings.host, settings.port)
    options = RunOptions(emulate=settings.emulate, scenario=settings.scenario)
    with contextlib.closing(sock):
        async with contextlib.AsyncExitStack() as stack:
            from runner.tools.sources import open_tool_sources

            for agent in list(ctx.agents.values()):  # MCP servers: one set per worker, shared by its calls
                ctx.add_tools(await stack.enter_async_context(
                    open_tool_sources(agent, warn=console.warning, info=console.info)))
            for agent in ctx.agents.values():  # one connector per way to the model (one emulator)
                key = ctx.connector_key(agent)
                if key not in ctx.connectors:
                    connector = await stack.enter_async_context(connect(agent, options, console, None))
                    ctx.connectors[key] = ctx.metrics.metered(connector)
            ctx.connector = ctx.connector_for(ctx.agent)
            host, bound_port = sock.getsockname()[:2]
            names = ", ".join(ctx.agents)
            console.info(f"serving {names} on http://{_url_host(host)}:{bound_port}/ "
                         f"(WebSocket /ws; at most {settings.max_conversations} conversations)")
            code: int = await serve(ctx, build_app(ctx), sock, console)
    console.info("server stopped")
    return code


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _token_env() -> str:
    from runner.serve.auth import TOKEN_ENV

    return TOKEN_ENV


