"""A customer's data for the dashboard and for data-subject requests: lookup, export of
everything stored, and erasure (what it removes and keeps: bot/services/admin.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.keys import ADMIN
from bot.services.admin import Unknown
from handlers.api.core import (
    ApiError,
    Operation,
    actor_of,
    path_param,
    query_param,
    text_schema,
)

routes = web.RouteTableDef()


class CustomerSummary(BaseModel):
    id: int
    external_id: str | None
    first_name: str | None
    email: str | None
    phone: str | None
    locale: str | None
    created_at: datetime
    opted_out_at: datetime | None
    erased_at: datetime | None


class CustomerList(BaseModel):
    customers: list[CustomerSummary]


class CustomerExport(BaseModel):
    customer: dict[str, Any]
    identities: list[dict[str, Any]]
    triggers: list[dict[str, Any]]
    deliveries: list[dict[str, Any]] = Field(description="without their link tokens")
    sessions: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    alerts: list[dict[str, Any]] = Field(description="with their notes")


class Erasure(BaseModel):
    external_id: str
    erased_at: datetime = Field(description="of the first erasure: erasing again answers "
                                            "the same")
    answers: int = Field(description="answers kept, anonymous, so the metrics stay true")
    sessions: int
    deliveries: int
    alerts: int
    files_clean: bool | None = Field(description=(
        "SQLite: true once the database files hold none of the erased data; false while "
        "another process kept the write-ahead log from being emptied (erase again to retry). "
        "PostgreSQL: null, the erased rows' space was vacuumed but the bytes can stay until "
        "reused, and in WAL archives and backups; false if VACUUM failed"))


EXTERNAL_ID = path_param("external_id", "the customer's id in your system")
OPERATIONS = [
    Operation("get", "/api/v1/customers", "Find customers by external id, e-mail or phone",
              {200: (CustomerList, "the matches (at most 20)")}, tag="customers",
              parameters=[{**query_param("q", "an external id, e-mail address, phone number "
                                              "or channel address",
                                         text_schema(200) | {"pattern": r"\S"}),
                           "required": True}],
              operation_id="findCustomers",
              description="The customers (at most 20) whose external id, e-mail address, "
                          "phone number or channel address matches q."),
    Operation("get", "/api/v1/customers/{external_id}/export",
              "Everything stored about a customer",
              {200: (CustomerExport, "the customer's data"), 404: (None, "no such customer")},
              tag="customers", parameters=[EXTERNAL_ID], operation_id="exportCustomer",
              description="Everything stored about a customer, for a data-subject request: "
                          "the customer, addresses, triggers, deliveries (without their link "
                          "tokens), dialogues, answers, alerts and their notes. Audited."),
    Operation("delete", "/api/v1/customers/{external_id}",
              "Erase a customer's personal data and texts; anonymous scores stay",
              {200: (Erasure, "erased (again: the same answer)"),
               404: (None, "no such customer")}, tag="customers", parameters=[EXTERNAL_ID],
              operation_id="eraseCustomer",
              description="Erases a customer's personal data (contact details, attributes, "
                          "addresses, free texts, notes, survey links) and opts them out for "
                          "good; their scores stay, anonymous, so no metric changes. Erasing "
                          "again answers the same. Audited."),
]


@routes.get("/api/v1/customers")
async def get_customers(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    if not q or len(q) > 200:
        raise ApiError(422, "invalid", "q: an external id, e-mail or phone (1-200 characters)",
                       "q")
    rows = await request.app[ADMIN].find_customers(q)
    return web.json_response(CustomerList(customers=[
        CustomerSummary.model_validate(row, from_attributes=True) for row in rows
    ]).model_dump(mode="json"))


@routes.get("/api/v1/customers/{external_id}/export")
async def get_customer_export(request: web.Request) -> web.Response:
    actor = actor_of(request)
    try:
        data = await request.app[ADMIN].export_customer(request.match_info["external_id"],
                                                        actor=actor)
    except Unknown as error:
        raise ApiError(404, "not_found", str(error), error.field) from None
    return web.json_response(CustomerExport.model_validate(data).model_dump(mode="json"))


@routes.delete("/api/v1/customers/{external_id}")
async def delete_customer(request: web.Request) -> web.Response:
    actor = actor_of(request)
    try:
        erased = await request.app[ADMIN].erase_customer(request.match_info["external_id"],
                                                         actor=actor)
    except Unknown as error:
        raise ApiError(404, "not_found", str(error), error.field) from None
    return web.json_response(Erasure.model_validate(erased, from_attributes=True)
                             .model_dump(mode="json"))
