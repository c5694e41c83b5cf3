"""GET /api/v1/metrics: a survey's NPS, CSAT, CES and CLI for a period, filtered and grouped,
with its response rate, completion rate and drop-off, read from the rollups."""

from __future__ import annotations

from aiohttp import web

from bot.keys import FIGURES
from bot.services.errors import NotFound
from bot.services.metrics import GROUP_BY, PARAMETERS, MetricsQuery, MetricsResult
from conversations.statuses import Respondent
from handlers.api.core import (
    ApiError,
    Operation,
    query_param,
    text_schema,
    validate,
)

routes = web.RouteTableDef()
# The context filter's two forms: context.KEY=VALUE, and context=KEY:VALUE, which a client
# generated from the OpenAPI document can send (a parameter's name cannot vary there).
CONTEXT = "context"
PREFIX = CONTEXT + "."
DAY = {"type": "string", "format": "date"}
SCHEMAS = {"survey": text_schema(64), "from": DAY, "to": DAY, "channel": text_schema(32),
           "segment": text_schema(200, 0),
           "respondent": {"type": "string", "enum": [kind.value for kind in Respondent]},
           "group_by": {"type": "string", "pattern": GROUP_BY.pattern}}
ONE_FILTER = ("at most one context filter per query: context rollups count each key on "
              "its own")

OPERATIONS = [
    Operation("get", "/api/v1/metrics", "A survey's metrics, filtered and grouped",
              {200: (MetricsResult, "the figures: overall, per group, the response rate of "
                                    "the surveys sent (anonymous answers beside it), the "
                                    "completion rate, the dialogues opened but not "
                                    "answered, and drop-off"),
               400: (None, "an unknown or repeated parameter, or a second context filter "
                           "(error.field names it)"),
               404: (None, "no such survey")},
              tag="metrics",
              parameters=[
                  {**query_param(name, description, SCHEMAS[name]),
                   "required": name == "survey"}
                  for name, description in PARAMETERS.items()] + [
                  {**query_param(CONTEXT,
                                 "a trigger-context filter as KEY:VALUE, e.g. "
                                 "agent_name:Anna (the key ends at the first colon); the "
                                 "same as context.KEY=VALUE, which is also taken. At most "
                                 "one context filter, in either form: rollups count an "
                                 "answer once per context key, never per combination of "
                                 "keys, so a second is a 400",
                                 {"type": "array", "maxItems": 1, "items": {
                                     "type": "string", "pattern": r"^[^:]+:[\s\S]+$"}}),
                   "style": "form", "explode": True}],
              operation_id="getMetrics",
              description="A survey's NPS, CSAT, CES and CLI for a period, filtered by "
                          "channel, segment, respondent kind and one trigger-context value, "
                          "and grouped by time, channel, segment, respondent or a context "
                          "key; with the response rate, the completion rate, the dialogues "
                          "opened but not answered, and drop-off. Read from the rollups, "
                          "never by scanning the answers."),
]


def _context(name: str, value: str) -> tuple[str, str]:
    """A context filter's (key, value), from either form of the parameter."""
    if name != CONTEXT:
        return name.removeprefix(PREFIX), value
    key, colon, wanted = value.partition(":")
    if not colon or not key:
        raise ApiError(422, "invalid", f"{CONTEXT}: KEY:VALUE, e.g. agent_name:Anna",
                       CONTEXT)
    return key, wanted


def query_of(request: web.Request) -> MetricsQuery:
    """The URL's parameters as a MetricsQuery: 400 for one unknown, repeated or a second
    context filter, 422 for a value that does not validate, naming the parameter."""
    params = request.query
    data: dict[str, object] = {}
    context: str | None = None  # the parameter that gave the filter
    for name in params:
        if len(params.getall(name)) > 1:
            raise ApiError(400, "invalid", ONE_FILTER if name == CONTEXT else
                           f"{name} is given more than once", name)
        if name == CONTEXT or name.startswith(PREFIX):
            if context is not None:
                raise ApiError(400, "invalid", ONE_FILTER, name)
            context = name
            key, value = _context(name, params[name])
            data["context"] = {"key": key, "value": value}
        elif name in PARAMETERS:
            data[name] = params[name]
        else:
            raise ApiError(400, "unknown_parameter", f"unknown parameter {name!r}: use "
                           f"{', '.join(PARAMETERS)}, context or context.KEY", name)
    try:
        return validate(MetricsQuery, data)
    except ApiError as error:
        if context is not None and error.field and error.field.startswith(CONTEXT):
            error.field = context
        raise


@routes.get("/api/v1/metrics")
async def get_metrics(request: web.Request) -> web.Response:
    query = query_of(request)
    try:
        result = await request.app[FIGURES].compute(query)
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc), "survey") from None
    return web.json_response(text=result.model_dump_json())
