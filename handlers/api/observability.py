"""GET /metrics for Prometheus (behind ADMIN_TOKEN when it is set: api.SCOPES), and the
middleware that times every request by its route's pattern."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.keys import AVAILABILITY
from bot.observability import Instruments
from handlers.api.core import Handler

INSTRUMENTS = web.AppKey("instruments", Instruments)
# One line per request: method, route pattern, status, duration. Never the path (it may
# hold a survey link's token) nor the client's address (personal data).
access = logging.getLogger("otklik.access")
routes = web.RouteTableDef()


@web.middleware
async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500  # an exception nobody turned into a response
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        # The pattern (/s/{token}), never the path: a token must not become a label.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        elapsed = time.perf_counter() - started
        request.app[INSTRUMENTS].http.labels(request.method, route, f"{status // 100}xx").observe(
            elapsed)
        if access.isEnabledFor(logging.INFO):
            access.info("%s %s %s %.1f ms", request.method, route, status, elapsed * 1000,
                        extra={"method": request.method, "route": route, "status": status,
                               "duration_ms": round(elapsed * 1000, 1)})


@routes.get("/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[INSTRUMENTS]
    metrics.refresh(await request.app[AVAILABILITY].gauges())
    return web.Response(body=generate_latest(metrics.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
