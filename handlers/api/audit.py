"""GET /api/v1/audit: who did what as an admin (erasures, exports, scripts, campaigns,
logins), newest first; who is `admin`, `token:<name>`, `signature` or `dashboard:<name>`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.keys import ADMIN
from handlers.api.core import (
    MAX_ID,
    ApiError,
    Operation,
    query_param,
    whole,
    whole_schema,
)

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
                                                "customer.exported, answers.exported, "
                                                "campaign.saved, campaign.run, "
                                                "dashboard.login, dashboard.login_refused, "
                                                "dashboard.logout, api.forbidden..."),
                          query_param("target", "a survey id, a customer's external id..."),
                          query_param("cursor", "next_cursor of the page before",
                                      whole_schema(1, MAX_ID)),
                          query_param("limit", "at most this many (1-500, default 100)",
                                      whole_schema(1, 500))],
              operation_id="listAudit",
              description="The audit log, newest first: who (admin, token:<name>, "
                          "signature, dashboard:<name>, scheduler, startup) did which admin "
                          "action on what, filtered by action and target; the next page is "
                          "?cursor=next_cursor."),
]


@routes.get("/api/v1/audit")
async def get_audit(request: web.Request) -> web.Response:
    query = request.query
    unknown = set(query) - {"action", "target", "cursor", "limit"}
    if unknown:
        name = sorted(unknown)[0]
        raise ApiError(422, "invalid", f"{name}: not a parameter of this route", name)
    before = whole(query["cursor"], "cursor", 1, MAX_ID) if "cursor" in query else None
    limit = whole(query.get("limit", "100"), "limit", 1, 500)
    rows = await request.app[ADMIN].audit_page(action=query.get("action"),
                                               target=query.get("target"),
                                               before=before, limit=limit)
    page = AuditPage(items=[AuditEntry.model_validate(row, from_attributes=True)
                            for row in rows],
                     next_cursor=str(rows[-1].id) if len(rows) == limit else None)
    return web.json_response(page.model_dump(mode="json"))
