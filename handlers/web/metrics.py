"""GET /api/v1/metrics: a survey's NPS, CSAT, CES and CLI for a period, filtered and grouped,
with its response rate, completion rate and drop-off, read from the rollups."""

from __future__ import annotations

from aiohttp import web

from bot.keys import FIGURES
from bot.services.errors import NotFound
from bot.services.metrics import GROUP_BY, MAX_VALUE, PARAMETERS, MetricsQuery, MetricsResult
from conversations.statuses import Respondent
from handlers.web.api import (
    ApiError,
    Operation,
    query_param,
    text_schema,
    validate,
)

routes = web.RouteTableDef()
CONTEXT = "context."
DAY = {"type": "string", "format": "date"}
SCHEMAS = {"survey": text_schema(64), "from": DAY, "to": DAY, "channel": text_schema(32),
           "segment": text_schema(200, 0),
           "respondent": {"type": "string", "enum": [kind.value for kind in Respondent]},
           "group_by": {"type": "string", "pattern": GROUP_BY.pattern}}

OPERATIONS = [
    Operation("get", "/api/v1/metrics", "A survey's metrics, filtered and grouped",
              {200: (MetricsResult, "the figures: overall, per group, the response rate of "
                                    "the surveys sent (anonymous answers beside it), the "
                                    "completion rate, the dialogues opened but not "
                                    "answered, and drop-off"),
               400: (None, "an unknown, repeated or second context parameter "
                           "(error.field names it)"),
               404: (None, "no such survey")},
              tag="metrics",
              parameters=[
                  {**query_param(name, description, SCHEMAS[name]),
                   "required": name == "survey"}
                  for name, description in PARAMETERS.items()] + [
                  {"name": "context.KEY", "in": "query", "required": False,
                   "description": "at most one trigger-context filter, e.g. "
                                  "context.agent=Anna: rollups count an answer once per "
                                  "context key, never per combination of keys",
                   "schema": text_schema(MAX_VALUE)}]),
]


def query_of(request: web.Request) -> MetricsQuery:
    """The URL's parameters as a MetricsQuery: 400 for one unknown, repeated or a second
    context filter, 422 for a value that does not validate, naming the parameter."""
    params = request.query
    data: dict[str, object] = {}
    context: tuple[str, str] | None = None
    for name in params:
        if len(params.getall(name)) > 1:
            raise ApiError(400, "invalid", f"{name} is given more than once", name)
        if name.startswith(CONTEXT):
            if context is not None:
                raise ApiError(400, "invalid", "at most one context filter per query: "
                               "context rollups count each key on its own", name)
            context = (name.removeprefix(CONTEXT), params[name])
            data["context"] = {"key": context[0], "value": context[1]}
        elif name in PARAMETERS:
            data[name] = params[name]
        else:
            raise ApiError(400, "unknown_parameter", f"unknown parameter {name!r}: use "
                           f"{', '.join(PARAMETERS)} or context.KEY", name)
    try:
        return validate(MetricsQuery, data)
    except ApiError as error:
        if context is not None and error.field and error.field.startswith("context"):
            error.field = CONTEXT + context[0]
        raise


@routes.get("/api/v1/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    query = query_of(request)
    try:
        result = await request.app[FIGURES].compute(query)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc), "survey") from None
    return web.json_response(text=result.model_dump_json())
