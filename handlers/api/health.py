"""GET /healthz: the process answers and the database is reachable. GET /openapi.json."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import version

from aiohttp import web
from pydantic import BaseModel

from bot.keys import AVAILABILITY, SETTINGS
from handlers.api import (
    alerts,
    answers,
    audit,
    campaigns,
    customers,
    metrics,
    surveys,
    triggers,
)
from handlers.api.core import Operation, openapi_document

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


class Health(BaseModel):
    status: str
    database: str


OPERATIONS = [
    Operation("get", "/healthz", "Liveness and database reachability",
              {200: (Health, "up, database reachable"),
               503: (Health, "the database is unreachable")}, auth=(), tag="health",
              operation_id="getHealth",
              description="Whether the process answers and its database is reachable: "
                          "for a load balancer's or an uptime monitor's checks."),
]


@routes.get("/healthz")
async def get_health(request: web.Request) -> web.Response:
    if not await request.app[AVAILABILITY].database_reachable():
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


# The routes the channels serve as an API (the pop-up's): handlers.channels.Plugin.
CHANNEL_OPERATIONS: web.AppKey[list[Operation]] = web.AppKey("channel_operations")


def document(server: str = "/", channels: Sequence[Operation] = ()) -> dict[str, object]:
    """The OpenAPI document, its `servers` naming `server`, with the channels' routes."""
    return openapi_document([*OPERATIONS, *triggers.OPERATIONS, *campaigns.OPERATIONS,
                             *channels, *answers.OPERATIONS, *customers.OPERATIONS,
                             *surveys.OPERATIONS, *audit.OPERATIONS, *alerts.OPERATIONS,
                             *metrics.OPERATIONS],
                            version=version("otklik"), server=server)


@routes.get("/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    # PUBLIC_URL is where clients reach us behind a proxy; without it, the address this
    # request came to is the best guess (a generator run against it gets a working URL).
    public = request.app[SETTINGS].public_url
    server = (public or f"{request.scheme}://{request.host}").rstrip("/") or "/"
    channels: list[Operation] = request.app[CHANNEL_OPERATIONS]
    return web.json_response(document(server, channels))
