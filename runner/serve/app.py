"""The ASGI app: health, readiness and metrics, the front ends' routes, and the page at `/`.

- `GET /ping`: AgentCore Runtime's health check, `{"status": "Healthy"}` or `"HealthyBusy"` while
  a conversation is live (the host then keeps the session's microVM).
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
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from runner.serve import frontends
from runner.serve.frontends.base import FRONT_ENDS
from runner.serve.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from starlette.requests import Request

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
    ]
    for front_end in FRONT_ENDS.values():
        routes.extend(front_end().routes(ctx))
    if (STATIC / "index.html").is_file():
        routes.append(Mount("/", StaticFiles(directory=STATIC, html=True), name="page"))
    else:
        routes.append(Route("/", _no_page, methods=["GET"]))
    return Starlette(routes=routes)


def _ping(ctx: ServeContext) -> Endpoint:
    async def ping(request: Request) -> Response:
        return JSONResponse({"status": "HealthyBusy" if ctx.busy else "Healthy"})

    return ping


def _readyz(ctx: ServeContext) -> Endpoint:
    async def readyz(request: Request) -> Response:
        reason = "starting" if ctx.connector is None else ctx.refusal()
        if reason is None:
            return JSONResponse({"ready": True, "live_conversations": ctx.live_count})
        return JSONResponse({"ready": False, "reason": reason, "live_conversations": ctx.live_count},
                            status_code=503)

    return readyz


def _metrics(ctx: ServeContext) -> Endpoint:
    async def metrics(request: Request) -> Response:
        return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE)

    return metrics


async def _no_page(request: Request) -> Response:
    return PlainTextResponse("agent-run serve: the browser page is not installed (runner/serve/static)\n",
                             status_code=404)
