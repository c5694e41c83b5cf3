"""The pop-up channel: `widget.js`, which a site includes with one <script> tag, and the
JSON API it talks to. Cross-origin calls are allowed only from WIDGET_ORIGINS; every
anonymous route (this API and the /w/ pages) is rate-limited per client address. A visitor
is a random id the widget keeps in the site's localStorage; the page's URL and that id go
into the dialogue's context."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, Field

from bot.keys import SETTINGS, SURVEYS
from bot.services.surveys import NoSurvey, OptedOut, Outcome, Tap, Who
from conversations.engine import Prompt, PromptKind
from handlers.api.core import (
    SURVEY_ID,
    ApiError,
    Operation,
    Strict,
    error_response,
    parse,
    path_param,
)
from handlers.api.throttle import LIMITER, client_address

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WIDGET_JS = Path(__file__).with_name("static") / "widget.js"
VISITOR = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
ANONYMOUS = ("/w/", "/api/v1/widget/")
SURVEY = path_param("survey", "a survey id", SURVEY_ID)


class Start(Strict):
    visitor: str | None = Field(None, description="the id this browser got before")
    page: str | None = Field(None, max_length=500, description="the embedding page's URL")


class Answer(Strict):
    visitor: str = Field(pattern=VISITOR.pattern)
    session_id: int = Field(ge=1)
    position: int = Field(ge=1, le=1000)
    picked: list[int] = Field(default_factory=list, max_length=50,
                              description="option indexes, as shown")
    text: str | None = Field(None, max_length=4000)
    skip: bool = False
    back: bool = False


class OptionOut(BaseModel):
    label: str


class PromptOut(BaseModel):
    kind: str
    text: str
    position: int
    total: int
    options: list[OptionOut]
    multiple: bool
    optional: bool
    low_label: str | None
    high_label: str | None


class WidgetState(BaseModel):
    visitor: str
    session_id: int
    title: str
    locale: str
    messages: list[str]
    prompt: PromptOut | None
    hint: str | None = None
    finished: bool


OPERATIONS = [
    Operation("post", "/api/v1/widget/{survey}/start", "Open (or resume) a visitor's survey",
              {200: (WidgetState, "the question to show"),
               404: (None, "no such survey open to visitors (the script's anonymous)"),
               410: (None, "this visitor asked for no surveys (error.code opted_out)")},
              body=Start, auth=(), tag="widget", parameters=[SURVEY],
              operation_id="startWidgetSurvey",
              description="Opens a survey marked anonymous for a site's visitor, or resumes "
                          "the visitor's dialogue, and returns the question to show. Send "
                          "the visitor id it returns with every later call."),
    Operation("post", "/api/v1/widget/{survey}/answer", "Answer the question shown",
              {200: (WidgetState, "what to show next"),
               404: (None, "no such survey open to visitors (the script's anonymous)"),
               410: (None, "the dialogue is closed (error.code closed): start again")},
              body=Answer, auth=(), tag="widget", parameters=[SURVEY],
              operation_id="answerWidgetSurvey",
              description="Answers the question shown in the visitor's dialogue (options "
                          "picked, a text, skip or back) and returns what to show next."),
]


def _state(visitor: str, outcome: Outcome) -> WidgetState:
    asked: list[Prompt] = [p for p in outcome.prompts if p.kind is not PromptKind.MESSAGE]
    hint = None
    if outcome.reprompt is not None and not outcome.finished:
        hint = outcome.reprompt.hint
        asked = [outcome.reprompt.prompt] if outcome.reprompt.prompt else asked
    prompt = asked[0] if asked else None
    return WidgetState(
        visitor=visitor, session_id=outcome.session_id, title=outcome.title,
        locale=outcome.locale, hint=hint, finished=prompt is None,
        messages=[p.text for p in outcome.prompts if p.kind is PromptKind.MESSAGE],
        prompt=None if prompt is None else PromptOut(
            kind=prompt.kind.value, text=prompt.text, position=prompt.position,
            total=prompt.total, options=[OptionOut(label=o.label) for o in prompt.options],
            multiple=prompt.multiple, optional=prompt.optional, low_label=prompt.low_label,
            high_label=prompt.high_label))


@routes.get("/widget.js")
async def get_widget(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(WIDGET_JS, headers={
        "Content-Type": "application/javascript; charset=utf-8",
        "Cache-Control": "public, max-age=300"})


@routes.post("/api/v1/widget/{survey}/start")
async def post_widget_start(request: web.Request) -> web.Response:
    body = await parse(request, Start)
    visitor = body.visitor if body.visitor and VISITOR.fullmatch(body.visitor) else (
        secrets.token_urlsafe(16))
    context: dict[str, str | int | float | bool] = {"visitor": visitor}
    if body.page:
        context["page"] = body.page
    try:
        outcome = await request.app[SURVEYS].begin(
            Who("web", visitor, locale=request.headers.get("Accept-Language", "")[:2] or None),
            request.match_info["survey"], context=context)
    except NoSurvey:  # unknown, or not open to visitors: the same answer for both
        raise ApiError(404, "not_found", "no such survey", "survey") from None
    except OptedOut:
        raise ApiError(410, "opted_out", "this visitor asked for no surveys", "visitor") from None
    return web.json_response(_state(visitor, outcome).model_dump(mode="json"))


@routes.post("/api/v1/widget/{survey}/answer")
async def post_widget_answer(request: web.Request) -> web.Response:
    body = await parse(request, Answer)
    outcome = await request.app[SURVEYS].tap(Who("web", body.visitor), Tap(
        body.session_id, body.position, picked=tuple(body.picked), skip=body.skip,
        back=body.back, text=body.text if body.text and not body.picked else None,
        survey=request.match_info["survey"]))
    if outcome is None:
        if not await request.app[SURVEYS].open_to_visitors(request.match_info["survey"]):
            raise ApiError(404, "not_found", "no such survey", "survey")
        raise ApiError(410, "closed", "this survey is closed; start again", "session_id")
    return web.json_response(_state(body.visitor, outcome).model_dump(mode="json"))


def cors_headers(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    allowed = request.app[SETTINGS].widget_origins
    if origin is None or ("*" not in allowed and origin not in allowed):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600"}


@web.middleware
async def anonymous(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rate limits and CORS for the routes anyone may call."""
    if not request.path.startswith(ANONYMOUS):
        return await handler(request)
    api = request.path.startswith("/api/")
    cors = cors_headers(request) if api else {}
    try:
        if api and "Origin" in request.headers and not cors:
            raise ApiError(403, "origin_not_allowed", "this site may not embed the survey "
                           "(WIDGET_ORIGINS)", "Origin")
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
        elif not await request.app[LIMITER].hit(client_address(request)):
            if not api:
                raise web.HTTPTooManyRequests(text="Too many requests: try again in a minute.",
                                              headers={"Retry-After": "60"})
            raise ApiError(429, "rate_limited", "too many requests: try again in a minute")
        else:
            response = await handler(request)
    except ApiError as error:  # answered here, so the browser may read it (CORS)
        response = error_response(error.status, error.code, error.message, error.field)
    response.headers.update(cors)
    return response


def options_routes() -> list[web.RouteDef]:
    async def preflight(request: web.Request) -> web.Response:  # answered by `anonymous`
        return web.Response(status=204)

    return [web.options("/api/v1/widget/{survey}/start", preflight),
            web.options("/api/v1/widget/{survey}/answer", preflight)]

