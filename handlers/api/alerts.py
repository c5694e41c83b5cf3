"""The closed loop's API: the alert queue, one alert with its conversation, and what an admin
does with it — take, note, reply to the customer, resolve. Admin routes (api.SCOPES)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from bot.keys import ALERTS
from bot.services.alerts import (
    MAX_TEXT,
    AlertError,
    AlertNotFound,
    AlertResolved,
    AlertService,
    AlertView,
    BadText,
    NotConfigured,
    SendFailed,
    Unreachable,
)
from conversations.statuses import AlertStatus
from handlers.api.core import (
    MAX_ID,
    ApiError,
    Handler,
    Operation,
    Strict,
    actor_of,
    number,
    parse,
    path_param,
    query_param,
    whole,
    whole_schema,
)

routes = web.RouteTableDef()
B = TypeVar("B", bound=BaseModel)
MAX_LIMIT = 200


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value.strip() if value is not None else None


class TextBody(Strict):
    text: str = Field(min_length=1, max_length=MAX_TEXT)

    _text = field_validator("text")(_not_blank)


class ResolveBody(Strict):
    note: str | None = Field(None, min_length=1, max_length=MAX_TEXT,
                             description="why it is resolved, kept in the notes")

    _note = field_validator("note")(_not_blank)


class TakeBody(Strict):
    owner: str | None = Field(None, min_length=1, max_length=200,
                              description="who works on it; default: whoever calls")

    _owner = field_validator("owner")(_not_blank)


class CustomerRef(BaseModel):
    id: int
    external_id: str | None
    first_name: str | None


class Note(BaseModel):
    kind: Literal["note", "reply"]
    author: str
    text: str
    at: datetime
    channel: str | None = Field(None, description="where a reply went: telegram | email")


class AnswerOut(BaseModel):
    step: str
    score: int | None
    choices: list[str]
    text: str | None


class AlertSummary(BaseModel):
    id: int
    status: Literal["open", "in_progress", "resolved"]
    survey: str
    step: str
    metric: str | None
    score: int | None
    customer: CustomerRef
    session_id: int
    channel: str = Field(description="the channel the customer answered in")
    owner: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    overdue_at: datetime | None = Field(description="when it was re-sent to the team chat, "
                                                    "nobody having taken it in time")


class AlertDetail(AlertSummary):
    context: dict[str, Any]
    answers: list[AnswerOut] = Field(description="the conversation, question by question")
    notes: list[Note]


class AlertPage(BaseModel):
    alerts: list[AlertSummary]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class Replied(BaseModel):
    channel: Literal["telegram", "email"]
    alert: AlertDetail


ID = path_param("id", "the alert id", whole_schema(1, MAX_ID))
_RESPONSES_404 = {404: (None, "no such alert")}
OPERATIONS = [
    Operation("get", "/api/v1/alerts", "The alert queue, newest first",
              {200: (AlertPage, "a page")}, tag="alerts",
              parameters=[
                  query_param("status", "open | in_progress | resolved",
                              {"type": "string", "enum": [s.value for s in AlertStatus]}),
                  query_param("survey", "a survey id"),
                  query_param("owner", "who took it"),
                  query_param("overdue", "true: re-sent overdue; false: not",
                              {"type": "boolean"}),
                  query_param("cursor", "next_cursor of the page before",
                              whole_schema(1, MAX_ID)),
                  query_param("limit", f"at most this many (1-{MAX_LIMIT}, default 50)",
                              whole_schema(1, MAX_LIMIT))],
              operation_id="listAlerts",
              description="The alert queue, newest first: answers that need the team's "
                          "attention (a low score), filtered by status, survey, owner and "
                          "overdue; the next page is ?cursor=next_cursor."),
    Operation("get", "/api/v1/alerts/{id}", "One alert, its conversation and notes",
              {200: (AlertDetail, "the alert"), **_RESPONSES_404}, tag="alerts",
              parameters=[ID], operation_id="getAlert",
              description="One alert with the customer's conversation, question by "
                          "question, and the team's notes and replies."),
    Operation("post", "/api/v1/alerts/{id}/reply",
              "Send a message to the customer in the channel they answered in",
              {200: (Replied, "sent, and recorded in the notes"), **_RESPONSES_404,
               409: (None, "the alert is resolved, or no channel reaches the customer "
                           "(error.code resolved or unreachable)"),
               502: (None, "the channel refused the message (error.code send_failed)"),
               503: (None, "this server cannot send on the customer's channel (error.code "
                           "channel_not_configured), or the database is unavailable for a "
                           "moment (database_unavailable, with Retry-After)")},
              body=TextBody, tag="alerts", parameters=[ID], operation_id="replyToAlert",
              description="Sends a message to the customer in the channel they answered "
                          "in (Telegram or e-mail) and records it in the alert's notes. "
                          "Audited."),
    Operation("post", "/api/v1/alerts/{id}/resolve", "Mark the alert handled",
              {200: (AlertDetail, "resolved"), **_RESPONSES_404,
               409: (None, "resolved already (error.code resolved)")},
              body=ResolveBody, body_required=False, tag="alerts", parameters=[ID],
              operation_id="resolveAlert",
              description="Marks the alert handled, with a note on why if given. "
                          "Audited."),
    Operation("post", "/api/v1/alerts/{id}/take", "Take the alert: in progress, with an owner",
              {200: (AlertDetail, "taken"), **_RESPONSES_404,
               409: (None, "the alert is resolved (error.code resolved)")},
              body=TakeBody, body_required=False, tag="alerts", parameters=[ID],
              operation_id="takeAlert",
              description="Marks the alert in progress with an owner (default: the "
                          "caller). Audited."),
    Operation("post", "/api/v1/alerts/{id}/notes", "Add a note for the team",
              {200: (AlertDetail, "noted"), **_RESPONSES_404},
              body=TextBody, tag="alerts", parameters=[ID], operation_id="addAlertNote",
              description="Adds a note for the team to the alert. Audited."),
]


def summary(view: AlertView) -> dict[str, Any]:
    return {"id": view.id, "status": view.status, "survey": view.survey_id, "step": view.step,
            "metric": view.metric, "score": view.score,
            "customer": {"id": view.customer_id, "external_id": view.external_id,
                         "first_name": view.first_name},
            "session_id": view.session_id, "channel": view.channel, "owner": view.owner,
            "created_at": view.created_at, "updated_at": view.updated_at,
            "resolved_at": view.resolved_at, "overdue_at": view.overdue_at}


def detail(view: AlertView) -> AlertDetail:
    return AlertDetail.model_validate({
        **summary(view), "context": dict(view.context),
        "answers": [{"step": a.step, "score": a.score, "choices": list(a.choices),
                     "text": a.text} for a in view.answers],
        "notes": list(view.notes)})


def _json(model: BaseModel) -> web.Response:
    return web.json_response(model.model_dump(mode="json"))


def _alert_id(request: web.Request) -> int:
    value = request.match_info["id"]
    if not (alert_id := number(value, MAX_ID)):  # 0 names no alert either
        raise ApiError(404, "not_found", f"no alert {value}", "id")
    return alert_id


async def _body(request: web.Request, model: type[B]) -> B:
    """The body as `model`; none at all is an empty object (resolve and take need none)."""
    if not request.body_exists:  # not can_read_body: the limits middleware read it first
        return model()
    return await parse(request, model)


async def _act(request: web.Request) -> tuple[AlertService, str, int]:
    """Authenticated first: an unknown id is not told to a caller without the token."""
    actor = actor_of(request)
    return request.app[ALERTS], actor, _alert_id(request)


def refusals(handler: Handler) -> Handler:
    """AlertService's refusals as the API's errors."""
    @functools.wraps(handler)
    async def mapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AlertError as error:
            raise _mapped(error) from None

    return mapped


def _mapped(error: AlertError) -> ApiError:
    match error:
        case AlertNotFound():
            return ApiError(404, "not_found", str(error), "id")
        case AlertResolved():
            return ApiError(409, "resolved", str(error), "id")
        case Unreachable():
            return ApiError(409, "unreachable", str(error), None)
        case NotConfigured():
            return ApiError(503, "channel_not_configured", str(error), None)
        case SendFailed():
            return ApiError(502, "send_failed", str(error), None)
        case BadText():
            return ApiError(422, "invalid", str(error), error.field)
    raise error  # a new kind of refusal, unmapped: a 500, loudly


@routes.get("/api/v1/alerts")
async def get_alerts(request: web.Request) -> web.Response:
    query = request.query
    status = query.get("status")
    if status is not None and status not in {s.value for s in AlertStatus}:
        raise ApiError(422, "invalid", "status: one of open, in_progress, resolved", "status")
    overdue = query.get("overdue")
    if overdue is not None and overdue not in ("true", "false"):
        raise ApiError(422, "invalid", "overdue: true or false", "overdue")
    before = whole(query["cursor"], "cursor", 1, MAX_ID) if "cursor" in query else None
    limit = whole(query.get("limit", "50"), "limit", 1, MAX_LIMIT)
    views = await request.app[ALERTS].queue(
        status=status, survey=query.get("survey"), owner=query.get("owner"),
        overdue=None if overdue is None else overdue == "true", before=before, limit=limit)
    return _json(AlertPage(
        alerts=[AlertSummary.model_validate(summary(view)) for view in views],
        next_cursor=str(views[-1].id) if views and len(views) == limit else None))


@routes.get("/api/v1/alerts/{id}")
@refusals
async def get_alert(request: web.Request) -> web.Response:
    alerts, _, alert_id = await _act(request)
    return _json(detail(await alerts.get(alert_id)))


@routes.post("/api/v1/alerts/{id}/reply")
@refusals
async def post_reply(request: web.Request) -> web.Response:
    alerts, actor, alert_id = await _act(request)
    body = await parse(request, TextBody)
    view, channel = await alerts.reply(alert_id, actor, body.text)
    return _json(Replied.model_validate({"channel": channel, "alert": detail(view)}))


@routes.post("/api/v1/alerts/{id}/resolve")
@refusals
async def post_resolve(request: web.Request) -> web.Response:
    alerts, actor, alert_id = await _act(request)
    body = await _body(request, ResolveBody)
    return _json(detail(await alerts.resolve(alert_id, actor, body.note)))


@routes.post("/api/v1/alerts/{id}/take")
@refusals
async def post_take(request: web.Request) -> web.Response:
    alerts, actor, alert_id = await _act(request)
    body = await _body(request, TakeBody)
    return _json(detail(await alerts.take(alert_id, body.owner or actor, actor=actor)))


@routes.post("/api/v1/alerts/{id}/notes")
@refusals
async def post_note(request: web.Request) -> web.Response:
    alerts, actor, alert_id = await _act(request)
    body = await parse(request, TextBody)
    return _json(detail(await alerts.note(alert_id, actor, body.text)))
