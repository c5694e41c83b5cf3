"""The trigger API: other systems say an interaction happened, and read what became of it.
Also the list of active surveys."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, EmailStr, Field, ValidationInfo, field_validator

from bot.keys import LINKS, TRIGGERS
from bot.phones import e164
from bot.services.triggers import CustomerIn, KeyReused, Trigger, TriggerError
from conversations.script import MAX_DELAY, ChannelName, Channels, TimeZoneName
from handlers.api.core import (
    MAX_ID,
    ApiError,
    Operation,
    Strict,
    actor_of,
    parse,
    path_param,
    query_param,
    whole,
    whole_schema,
)

routes = web.RouteTableDef()
Scalar = str | int | float | bool


class CustomerBody(Strict):
    external_id: str = Field(min_length=1, max_length=200,
                             description="the customer's id in your system")
    telegram_id: int | None = Field(None, gt=0, le=2**63 - 1,
                                    description="Telegram user id (private chat)")
    email: EmailStr | None = None
    phone: str | None = Field(None, max_length=40, examples=["+14155550123"],
                              description="international format; stored as E.164")
    first_name: str | None = Field(None, max_length=200)
    locale: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
                               examples=["ru", "en"])
    timezone: TimeZoneName | None = Field(None, max_length=64, examples=["Europe/Moscow"],
                                          description="IANA time zone, for quiet hours")
    attributes: dict[str, Scalar] = Field(default_factory=dict, max_length=50,
                                          description="segment, plan, city...")

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if (number := e164(value)) is None:
            raise ValueError("not a valid phone number in international format "
                             "(e.g. +14155550123)")
        return number


class TriggerBody(Strict):
    survey: str = Field(min_length=1, max_length=64, description="the survey's id",
                        examples=["post_call_csat"])
    idempotency_key: str = Field(min_length=1, max_length=200,
                                 description="the same key again returns the first answer")
    customer: CustomerBody
    context: dict[str, Scalar] = Field(default_factory=dict, max_length=50,
                                       description="agent, call type, shop... for "
                                                   "placeholders, branching and reports")
    channel: Literal[ChannelName, "link"] | None = Field(
        None, description="where to ask first; default: the first of `channels` (or of "
                          "the script's, or of this installation's) that reaches the "
                          "customer. `link` sends nothing: the delivery is `sent` at once "
                          "and its `survey_url` is yours to hand on (no address needed, no "
                          "reminder, no quiet hours; opt-out and throttling still apply)")
    channels: Channels | None = Field(
        None, examples=[["telegram", "whatsapp", "sms", "email"]],
        description="the only channels to ask in, in the order to try them (a closed one "
                    "falls back to the next); default: the script's policy.channels, or "
                    "every channel this installation sends on")
    delay: timedelta | None = Field(None, description="ISO 8601 duration, e.g. PT15M; "
                                                      "default: the script's policy.delay")

    @field_validator("idempotency_key")
    @classmethod
    def _nfc(cls, value: str) -> str:
        """A key typed as é (one code point) and as e + accent is the same key: stored and
        compared in NFC, and the stored payload carries that form, so a replay matches it.
        Keys stored before are left as they were, no migration: a sender retries within
        minutes, keys are nearly always ASCII (the same in every form), and normalising the
        stored ones could make two different recorded keys one."""
        return unicodedata.normalize("NFC", value)

    @field_validator("channels")
    @classmethod
    def _holds_channel(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        asked = info.data.get("channel")
        if value and asked and asked not in value:
            raise ValueError(f"must hold the `channel` asked for first ({asked!r})")
        return value

    @field_validator("delay")
    @classmethod
    def _delay(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(0) <= value <= MAX_DELAY:
            raise ValueError(f"must be between PT0S and P{MAX_DELAY.days}D")
        return value


class TriggerAccepted(BaseModel):
    trigger_id: int
    delivery_id: int
    status: Literal["scheduled", "suppressed", "sent"] = Field(
        description="sent: a `link` delivery, nothing to send")
    reason: str | None = Field(None, description="opted_out | throttled | no_channel when "
                                                 "suppressed; quiet_hours when moved")
    due_at: datetime
    survey_url: str | None = Field(None, description=(
        "the survey's page, when scheduled or sent: whoever has it may answer there "
        "(hand it on yourself, or let the channel carry it)"))


class SurveySummary(BaseModel):
    id: str
    version: int
    title: dict[str, str]
    step_types: list[str]


class SurveyList(BaseModel):
    surveys: list[SurveySummary]


class Delivery(BaseModel):
    id: int
    survey: str
    script_version: int | None
    customer_id: int
    trigger_id: int | None
    channel: str
    channels: list[str] | None
    sent_channel: str | None
    status: str
    reason: str | None
    attempts: int
    last_error: str | None
    due_at: datetime
    sent_at: datetime | None
    expires_at: datetime | None
    context: dict[str, Any]


class DeliveryPage(BaseModel):
    deliveries: list[Delivery]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


OPERATIONS = [
    Operation("post", "/api/v1/triggers", "Report an interaction; schedules a survey",
              {202: (TriggerAccepted, "recorded: the delivery is scheduled or suppressed"),
               200: (TriggerAccepted, "this idempotency_key was recorded before: the first "
                                      "answer"),
               409: (None, "this idempotency_key came before with another body "
                           "(error.code idempotency_conflict)"),
               422: (None, "a field is invalid (error.field names it), or no active survey "
                           "has this id (error.code unknown_survey)")},
              body=TriggerBody, auth=("bearer", "signature"), tag="triggers",
              operation_id="createTrigger",
              description="Reports an interaction (a call, an order) so that Otklik asks "
                          "the customer: creates or updates the customer by external_id "
                          "and schedules a delivery under the survey's policy, or records "
                          "it suppressed (opted out, throttled, no reachable channel). A "
                          "scheduled or sent delivery comes with its survey_url. The same "
                          "idempotency_key again answers 200 with the first answer and "
                          "stores nothing; with another body it is a 409."),
    Operation("get", "/api/v1/surveys", "The active survey scripts",
              {200: (SurveyList, "one entry per survey")}, tag="surveys",
              operation_id="listSurveys",
              description="The active survey scripts, the ids a trigger may name: each "
                          "one's version, title per locale and step types."),
    Operation("get", "/api/v1/deliveries", "Deliveries and the decision on each, by id",
              {200: (DeliveryPage, "a page")}, tag="triggers",
              operation_id="listDeliveries",
              description="Deliveries in id order, each with the policy's decision "
                          "(status, reason, due_at), filtered by customer, status or "
                          "survey; the next page is ?cursor=next_cursor.",
              parameters=[query_param("customer", "a customer's external_id"),
                          query_param("status", "scheduled, sent, suppressed..."),
                          query_param("survey", "a survey id"),
                          query_param("cursor", "next_cursor of the page before",
                                      whole_schema(0, MAX_ID)),
                          query_param("limit", "at most this many (1-500, default 100)",
                                      whole_schema(1, 500))]),
    Operation("get", "/api/v1/deliveries/{id}", "One delivery and its decision",
              {200: (Delivery, "the delivery"), 404: (None, "no such delivery")},
              tag="triggers", parameters=[path_param("id", "the delivery id",
                                                     whole_schema(1, MAX_ID))],
              operation_id="getDelivery",
              description="One delivery and the decision on it: status, reason, the "
                          "channel it went out in, attempts and the last error."),
]


@routes.post("/api/v1/triggers")
async def post_trigger(request: web.Request) -> web.Response:
    body = await parse(request, TriggerBody)
    customer = body.customer
    try:
        accepted = await request.app[TRIGGERS].accept(Trigger(
            survey=body.survey, idempotency_key=body.idempotency_key,
            customer=CustomerIn(customer.external_id, customer.telegram_id,
                                customer.email.lower() if customer.email else None,
                                customer.phone, customer.first_name, customer.locale,
                                customer.timezone, customer.attributes),
            payload=body.model_dump(mode="json"), context=body.context,
            channel=body.channel, delay=body.delay, channels=body.channels,
            source=actor_of(request)))
    except KeyReused as error:
        raise ApiError(409, "idempotency_conflict", str(error), error.field) from None
    except TriggerError as error:
        raise ApiError(422, "unknown_survey", str(error), error.field) from None
    body_out = accepted.to_json()
    token = body_out.pop("token")
    # The link, not the bare token: what a caller hands on is the page.
    body_out["survey_url"] = request.app[LINKS].page(token) if token else None
    return web.json_response(body_out, status=200 if accepted.replay else 202)


@routes.get("/api/v1/surveys")
async def get_surveys(request: web.Request) -> web.Response:
    scripts = await request.app[TRIGGERS].active_surveys()
    return web.json_response(SurveyList(surveys=[
        SurveySummary(id=s.id, version=s.version, title=dict(s.title),
                      step_types=[step.type for step in s.steps]) for s in scripts
    ]).model_dump(mode="json"))


@routes.get("/api/v1/deliveries")
async def get_deliveries(request: web.Request) -> web.Response:
    query = request.query
    after = whole(query.get("cursor", "0"), "cursor", 0, MAX_ID)
    limit = whole(query.get("limit", "100"), "limit", 1, 500)
    rows = await request.app[TRIGGERS].deliveries(
        customer=query.get("customer"), status=query.get("status"),
        survey=query.get("survey"), after=after, limit=limit)
    page = DeliveryPage(deliveries=[Delivery.model_validate(row) for row in rows],
                        next_cursor=str(rows[-1]["id"]) if len(rows) == limit else None)
    return web.json_response(page.model_dump(mode="json"))


@routes.get("/api/v1/deliveries/{id}")
async def get_delivery(request: web.Request) -> web.Response:
    delivery_id = whole(request.match_info["id"], "id", 1, MAX_ID)
    row = await request.app[TRIGGERS].delivery(delivery_id)
    if row is None:
        raise ApiError(404, "not_found", f"no delivery {delivery_id}", "id")
    return web.json_response(Delivery.model_validate(row).model_dump(mode="json"))
