"""The ASGI app: health, readiness and metrics, the front ends' routes, and the page at `/`.

- `GET /ping`: AgentCore Runtime's health check, `{"status": "Healthy"}` or `"HealthyBusy"` while
  a conversation is live (the host then keeps the session's microVM), with `time_of_last_update`:
  when the status last changed (Unix seconds; the server's start until a first caller).
- `GET /agents`: the agents served (a caller endpoint: the token applies), in the order of the
  command line; the first is the default.
- `GET /readyz`: 200 while new callers are taken, 503 (with the reason) while full or draining,
  so a load balancer sends the next caller elsewhere.
- `GET /metrics`: Prometheus text format (runner.serve.metrics).
- `/` and its files: the page shipped in runner/serve/static (no build step, nothing from outside).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from runner.serve import frontends
from runner.serve.forwarded import ForwardedHeaders, TrustedProxies
from runner.serve.frontends.base import FRONT_ENDS
from runner.serve.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from starlette.requests import Request

    from runner.config.model import AgentConfig
    from runner.serve.context import ServeContext

STATIC = Path(__file__).parent / "static"

type Endpoint = Callable[[Request], Awaitable[Response]]


def build_app(ctx: ServeContext) -> Starlette:
    for module in pkgutil.iter_modules(frontends.__path__):  # each registers its front end
        importlib.import_module(f"{frontends.__name__}.{module.name}")
    routes: list[BaseRoute] = [
        Route("/ping", _ping(ctx), methods=["GET"]),
        Route("/readyz", _readyz(ctx), methods=["GET"]),
        Route("/metrics", _metrics(ctx), methods=["GET"]),
        Route("/agents", _agents(ctx), methods=["GET"]),
    ]
    for front_end in FRONT_ENDS.values():
        routes.extend(front_end().routes(ctx))
    if (STATIC / "index.html").is_file():
        routes.append(Mount("/", StaticFiles(directory=STATIC, html=True), name="page"))
    else:
        routes.append(Route("/", _no_page, methods=["GET"]))
    trusted = TrustedProxies(ctx.settings.forwarded_allow_ips)
    return Starlette(routes=routes, middleware=[Middleware(ForwardedHeaders, trusted=trusted)])


def _ping(ctx: ServeContext) -> Endpoint:
    async def ping(request: Request) -> Response:
        return JSONResponse({"status": "HealthyBusy" if ctx.busy else "Healthy",
                             "time_of_last_update": ctx.status_changed_at})

    return ping


def _readyz(ctx: ServeContext) -> Endpoint:
    async def readyz(request: Request) -> Response:
        reason = "starting" if ctx.connector is None else ctx.refusal()
        if reason is None:
            return JSONResponse({"ready": True, "live_conversations": ctx.live_count})
        return JSONResponse({"ready": False, "reason": reason, "live_conversations": ctx.live_count},
                            status_code=503)

    return readyz


def _agents(ctx: ServeContext) -> Endpoint:
    async def agents(request: Request) -> Response:
        if not ctx.authorized(request):
            return JSONResponse({"error": "a valid token is required"}, status_code=403)
        return JSONResponse([describe_agent(ctx, agent) for agent in ctx.agents.values()])

    return agents


def describe_agent(ctx: ServeContext, agent: AgentConfig) -> dict[str, object]:
    """What `GET /agents` says of one agent (nothing secret: no prompt, no tools' code)."""
    return {"name": agent.name, "description": agent.description, "model": agent.model.id,
            "input_rate": agent.audio.input_sample_rate, "output_rate": agent.audio.output_sample_rate,
            "text": ctx.takes_text(agent), "default": agent is ctx.agent}


def _metrics(ctx: ServeContext) -> Endpoint:
    async def metrics(request: Request) -> Response:
        return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE)

    return metrics


async def _no_page(request: Request) -> Response:
    return PlainTextResponse("agent-run serve: the browser page is not installed (runner/serve/static)\n",
                             status_code=404)
