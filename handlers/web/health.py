"""GET /healthz: the process answers and the database is reachable. GET /openapi.json."""

from __future__ import annotations

import logging
from importlib.metadata import version

from aiohttp import web
from pydantic import BaseModel

from bot.keys import AVAILABILITY
from handlers.web import (
    alerts,
    answers,
    audit,
    campaigns,
    customers,
    metrics,
    surveys,
    triggers,
    widget,
)
from handlers.web.api import Operation, openapi_document

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


class Health(BaseModel):
    status: str
    database: str


OPERATIONS = [
    Operation("get", "/healthz", "Liveness and database reachability",
              {200: (Health, "up, database reachable"),
               503: (Health, "the database is unreachable")}, auth=(), tag="health"),
]


@routes.get("/healthz")
async def get_health(request: web.Request) -> web.Response:
    if not await request.app[AVAILABILITY].database_reachable():
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


def document() -> dict[str, object]:
    return openapi_document([*OPERATIONS, *triggers.OPERATIONS, *campaigns.OPERATIONS,
                             *widget.OPERATIONS, *answers.OPERATIONS, *customers.OPERATIONS,
                             *surveys.OPERATIONS, *audit.OPERATIONS, *alerts.OPERATIONS,
                             *metrics.OPERATIONS],
                            version=version("otklik"))


@routes.get("/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(document())
