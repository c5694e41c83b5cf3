"""GET /api/v1/answers: answers with their free texts, filtered, newest first, paged by an
opaque cursor; with `Accept: text/csv` the same filters stream a CSV file, and with the XLSX
media type in Accept they give the same rows as an Excel workbook. The format is chosen by
Accept alone, as the CSV always was: no other route takes a format parameter."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from bot.keys import ADMIN, EXPORTS
from bot.services.exports import XLSX_TYPE, AnswerFilters, export_filename
from bot.services.metrics import FIRST_DAY, LAST_DAY
from conversations.statuses import Respondent
from handlers.api.core import (
    ApiError,
    Operation,
    Strict,
    actor_of,
    query_param,
    text_schema,
    validate,
    whole_schema,
)

routes = web.RouteTableDef()


OUTSIDE = f"must be from {FIRST_DAY} to {LAST_DAY} (in UTC)"


class AnswerQuery(Strict):
    """The query string; an unknown parameter is an error (a typo should not widen an
    export silently)."""

    survey: str | None = Field(None, min_length=1, max_length=64)
    start: datetime | None = Field(None, alias="from")
    end: datetime | None = Field(None, alias="to")
    channel: str | None = Field(None, min_length=1, max_length=32)
    step: str | None = Field(None, min_length=1, max_length=128)
    score_min: int | None = Field(None, ge=-1000, le=1000)
    score_max: int | None = Field(None, ge=-1000, le=1000)
    has_text: bool | None = None
    q: str | None = Field(None, min_length=1, max_length=200)
    respondent: Literal["known", "anonymous"] | None = None
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(100, ge=1, le=500)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _moment(cls, value: object, info: ValidationInfo) -> object:
        """A date means that whole day in UTC (`to` includes it); a time without an
        offset is UTC."""
        if not isinstance(value, str):
            return value
        try:
            day = date.fromisoformat(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("an ISO 8601 date or date-time, e.g. 2026-03-01 or "
                                 "2026-03-01T09:00:00+03:00") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            try:
                day = moment.astimezone(UTC).date()
            except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
                day = date.min
            if not FIRST_DAY <= day <= LAST_DAY:
                raise ValueError(OUTSIDE) from None
            return moment
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(OUTSIDE)
        if info.field_name == "end":
            day += timedelta(days=1)
        return datetime.combine(day, time(), UTC)

    def filters(self) -> AnswerFilters:
        return AnswerFilters(survey=self.survey, start=self.start, end=self.end,
                             channel=self.channel, step=self.step, score_min=self.score_min,
                             score_max=self.score_max, has_text=self.has_text, q=self.q,
                             respondent=self.respondent)


class AnswerItem(BaseModel):
    id: int
    survey_id: str
    script_version: int
    session_id: int
    customer: str | None = Field(description="the customer's external_id (no contact data)")
    step_id: str
    metric: str
    score: int | None
    choices: list[str] | None
    text: str | None
    channel: str
    segment: str
    respondent: str = Field(description="known: a customer the product knows; anonymous: a "
                                        "visitor of /w/ or the widget")
    context: dict[str, Any]
    answered_at: datetime


class AnswerPage(BaseModel):
    items: list[AnswerItem]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


MOMENT = {"anyOf": [{"type": "string", "format": "date"},
                    {"type": "string", "format": "date-time"}]}
SCORE = whole_schema(-1000, 1000)

PARAMETERS = [
    query_param("survey", "a survey id", text_schema(64)),
    query_param("from", "answered at or after: an ISO date (that day, UTC) or date-time",
                MOMENT),
    query_param("to", "answered before: an ISO date (that whole day included) or date-time",
                MOMENT),
    query_param("channel", "telegram, email, web...", text_schema(32)),
    query_param("step", "a step id (an answer key: score, loyalty.switch...)", text_schema(128)),
    query_param("score_min", "scores at least this", SCORE),
    query_param("score_max", "scores at most this", SCORE),
    query_param("has_text", "true: only answers with a free text; false: only without",
                {"type": "boolean"}),
    query_param("q", "case-insensitive search in the free text", text_schema(200)),
    query_param("respondent", "known or anonymous (default: both)",
                {"type": "string", "enum": [kind.value for kind in Respondent]}),
    query_param("cursor", "next_cursor of the page before (JSON only)",
                {"type": "string", "maxLength": 200}),
    query_param("limit", "at most this many (1-500, default 100; JSON only)",
                whole_schema(1, 500)),
]

OPERATIONS = [
    Operation("get", "/api/v1/answers", "Answers with their texts, newest first",
              {200: (AnswerPage, "a page (or, by Accept, the CSV or XLSX file)"),
               400: (None, "a cursor this API did not give out (error.code bad_cursor)")},
              tag="answers", parameters=PARAMETERS, operation_id="listAnswers",
              description="Answers with their free texts, newest first, filtered by survey, "
                          "period, channel, step, score, text and respondent; the next page "
                          "is ?cursor=next_cursor. By Accept, the same filters give every "
                          "row at once: text/csv streams a CSV file (UTF-8 with a BOM, for "
                          f"Excel), {XLSX_TYPE} an XLSX workbook; in both a text cell that "
                          "would start a formula (= + - @ tab CR) starts with an apostrophe "
                          "and bidi controls are dropped. A file export is audited.",
              media={200: {"text/csv": {"schema": {"type": "string"}},
                           XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}}),
]


@routes.get("/api/v1/answers")
async def get_answers(request: web.Request) -> web.StreamResponse:
    actor = actor_of(request)
    query = validate(AnswerQuery, dict(request.query))
    if query.start and query.end and query.start >= query.end:
        raise ApiError(422, "invalid", "to: must be after from", "to")
    if (query.score_min is not None and query.score_max is not None
            and query.score_min > query.score_max):
        raise ApiError(422, "invalid", "score_max: must not be below score_min", "score_max")
    admin = request.app[ADMIN]
    accept = request.headers.get("Accept", "")
    if XLSX_TYPE in accept or "text/csv" in accept:
        filters = query.filters()
        await admin.audit(actor, "answers.exported", filters.survey or "*",
                          query.model_dump(mode="json", by_alias=True, exclude_none=True,
                                           exclude={"cursor", "limit"}))
        if XLSX_TYPE in accept:
            return await _xlsx(request, filters)
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="'
                                   f'{export_filename(filters, admin.now().date(), "csv")}"'})
        response.enable_chunked_encoding()
        await response.prepare(request)
        async for chunk in request.app[EXPORTS].csv(filters):
            await response.write(chunk)
        await response.write_eof()
        return response
    try:
        items, following = await request.app[EXPORTS].page(
            query.filters(), cursor=query.cursor, limit=query.limit)
    except ValueError as error:
        raise ApiError(400, "bad_cursor", str(error), "cursor") from None
    page = AnswerPage(items=[AnswerItem.model_validate(item) for item in items],
                      next_cursor=following)
    return web.json_response(page.model_dump(mode="json"))


async def _xlsx(request: web.Request, filters: AnswerFilters) -> web.StreamResponse:
    """A workbook is a zip whose directory comes last: it is written whole to a temporary
    file, page by page, and then sent from there."""
    admin = request.app[ADMIN]
    name = export_filename(filters, admin.now().date(), "xlsx")
    with tempfile.TemporaryDirectory(prefix="otklik-export-") as folder:
        path = Path(folder) / name
        await request.app[EXPORTS].xlsx(filters, path)
        response = web.FileResponse(path, headers={
            "Content-Type": XLSX_TYPE,
            "Content-Disposition": f'attachment; filename="{name}"'})
        await response.prepare(request)  # sends the file: the folder may go after this
    return response
