"""GET /api/v1/audit: who did what as an admin (erasures, exports, scripts), newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.keys import ADMIN
from handlers.web.api import ApiError, Operation, query_param, require_admin

routes = web.RouteTableDef()


class AuditEntry(BaseModel):
    id: int
    actor: str
    action: str = Field(examples=["script.stored", "customer.erased"])
    target: str
    details: dict[str, Any]
    at: datetime


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


OPERATIONS = [
    Operation("get", "/api/v1/audit", "The audit log of admin actions, newest first",
              {200: (AuditPage, "a page")}, tag="audit",
              parameters=[query_param("action", "script.stored, script.activated, "
                                                "script.deactivated, customer.erased, "
                                                "customer.exported, answers.exported..."),
                          query_param("target", "a survey id, a customer's external id..."),
                          query_param("cursor", "next_cursor of the page before"),
                          query_param("limit", "at most this many (1-500, default 100)",
                                      {"type": "integer", "minimum": 1, "maximum": 500})]),
]


@routes.get("/api/v1/audit")
async def get_audit(request: web.Request) -> web.Response:
    require_admin(request)
    query = request.query
    unknown = set(query) - {"action", "target", "cursor", "limit"}
    if unknown:
        name = sorted(unknown)[0]
        raise ApiError(422, "invalid", f"{name}: not a parameter of this route", name)
    before = _int(query["cursor"], "cursor", 2**62) if "cursor" in query else None
    limit = _int(query.get("limit", "100"), "limit", 500)
    rows = await request.app[ADMIN].audit_page(action=query.get("action"),
                                               target=query.get("target"),
                                               before=before, limit=limit)
    page = AuditPage(items=[AuditEntry.model_validate(row, from_attributes=True)
                            for row in rows],
                     next_cursor=str(rows[-1].id) if len(rows) == limit else None)
    return web.json_response(page.model_dump(mode="json"))


def _int(value: str, name: str, high: int) -> int:
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise ApiError(422, "invalid", f"{name}: a whole number from 1 to {high}", name)
    return int(value)
