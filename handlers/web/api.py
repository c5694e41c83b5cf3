"""What every JSON route shares: errors as `{"error": {code, message, field}}`, request
bodies parsed by pydantic models, authentication, and the OpenAPI document, generated from
the same models the handlers parse and answer with, so it cannot drift from them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

from bot.keys import SETTINGS

# Re-exported: triggers are signed as outbound webhooks are.
from bot.signing import SIGNATURE_HEADER as SIGNATURE_HEADER
from bot.signing import TIMESTAMP_HEADER as TIMESTAMP_HEADER
from bot.signing import same_secret
from bot.signing import signature as signature
from conversations.script import ID_PATTERN

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REPLAY_WINDOW = 300  # seconds either way between the sender's clock and ours
MAX_ID = 2**62  # the largest row id or id cursor a parameter may name
MAX_VERSION = 2**31 - 1  # a script's version: a 32-bit INTEGER on PostgreSQL
NUL = "\x00"
# Larger request bodies are refused with a 413 (a trigger is a few hundred bytes).
MAX_BODY = 256 * 1024


class ApiError(Exception):
    """An error the API answers with: its status, a stable code, a message for a human
    and the field at fault (a dotted path into the body, a header or a parameter)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class Problem(BaseModel):
    code: str = Field(examples=["invalid"])
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: Problem


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "field": field}},
                             status=status, headers=headers)


def _field_of(error: ValidationError) -> tuple[str, str]:
    first = error.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return path, f"{path}: {message}" if path else message


def _nul_at(data: object) -> str | None:
    """Where a NUL character is in parsed JSON (in a string or a key), as a dotted path.
    A loop, not recursion: the body may be nested as deeply as json.loads allows."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and NUL in value:
            return path
        pairs = (value.items() if isinstance(value, dict) else
                 enumerate(value) if isinstance(value, list) else ())
        for key, item in pairs:
            where = f"{path}.{key}" if path else str(key)
            if NUL in str(key):
                return where
            stack.append((where, item))
    return None


def _nul_parameter(request: web.Request) -> str | None:
    """The first path or query parameter holding a NUL character: its name."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        if NUL in name or NUL in value:
            return name
    return None


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under /api/ becomes a JSON error; nothing else leaves a traceback.
    A NUL character in the URL is refused on every route: PostgreSQL can neither store
    nor compare one, so it would fail deep down as a 500."""
    if (name := _nul_parameter(request)) is not None:
        if not request.path.startswith("/api/"):
            raise web.HTTPBadRequest(text="A NUL character is not allowed in a URL.")
        return error_response(422, "invalid", f"{name}: must not contain a NUL character",
                              name)
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message, error.field)
    except web.HTTPException as error:
        if not request.path.startswith("/api/") or error.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed",
                413: "too_large"}.get(error.status, "http_error")
        return error_response(error.status, code, error.reason, headers={
            k: v for k, v in error.headers.items() if k.lower() == "allow"})


async def parse(request: web.Request, model: type[M]) -> M:
    """The body as `model`: 415 unless JSON, 400 if it does not parse, 422 naming the first
    field that does not validate. JSON's types are taken as they are: 0 is not false and
    "5" is not 5, as the OpenAPI document says (strings still carry dates and durations)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json",
                       "Content-Type")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {error}", "body") from None
    except RecursionError:
        raise ApiError(400, "bad_json", "the body is nested too deeply", "body") from None
    if (where := _nul_at(data)) is not None:
        raise ApiError(422, "invalid", f"{where or 'body'}: must not contain a NUL character",
                       where or "body")
    return validate(model, raw)


def validate(model: type[M], data: object) -> M:
    """`data` as `model`, or a 422 naming the first field at fault: raw JSON bytes strictly,
    anything else (a query string's values) leniently."""
    try:
        if isinstance(data, bytes):
            return model.model_validate_json(data, strict=True)
        return model.model_validate(data)
    except ValidationError as error:
        path, message = _field_of(error)
        raise ApiError(422, "invalid", message, path or "body") from None


# -- authentication ---------------------------------------------------------------------------


def _tokens(request: web.Request) -> list[str]:
    settings = request.app[SETTINGS]
    tokens = [settings.admin_token, *settings.api_tokens]
    return [token.get_secret_value() for token in tokens if token is not None]


def _presented(request: web.Request) -> str | None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented.strip() else None


def bearer_ok(request: web.Request) -> bool:
    if (presented := _presented(request)) is None:
        return False
    # Every configured token is compared, in constant time, whatever matches first.
    matches = [same_secret(presented, token) for token in _tokens(request)]
    return any(matches)


def require_bearer(request: web.Request) -> None:
    if not bearer_ok(request):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <API token>",
                       "Authorization")


# The dashboard's session middleware puts who is logged in here; an API call's actor is
# its token's role.
ACTOR = web.RequestKey("actor", str)


def require_admin(request: web.Request) -> str:
    """Admin routes (metrics, answers, alerts, scripts, customers, audit) take ADMIN_TOKEN
    or a dashboard session; API_TOKENS only post triggers. Returns who acts, for the
    audit log."""
    if (actor := request.get(ACTOR)) is not None:
        return str(actor)
    admin, presented = request.app[SETTINGS].admin_token, _presented(request)
    if admin is None or presented is None or not same_secret(presented,
                                                              admin.get_secret_value()):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>",
                       "Authorization")
    return "admin-token"


async def require_signature_or_bearer(request: web.Request) -> None:
    """A trigger comes with an API token, or signed with TRIGGER_SECRET."""
    if SIGNATURE_HEADER not in request.headers:
        require_bearer(request)
        return
    secret = request.app[SETTINGS].trigger_secret
    if secret is None:
        raise ApiError(401, "unauthorized", "signed requests are not enabled (TRIGGER_SECRET)",
                       SIGNATURE_HEADER)
    stamp = request.headers.get(TIMESTAMP_HEADER, "")
    if (signed_at := number(stamp, 2**40)) is None:
        raise ApiError(401, "unauthorized", f"a signed request needs {TIMESTAMP_HEADER}: "
                       "the Unix time it was signed at", TIMESTAMP_HEADER)
    if abs(time.time() - signed_at) > REPLAY_WINDOW:
        raise ApiError(401, "stale_signature", f"{TIMESTAMP_HEADER} is more than "
                       f"{REPLAY_WINDOW // 60} minutes away from our clock", TIMESTAMP_HEADER)
    expected = signature(secret.get_secret_value().encode(), stamp, await request.read())
    if not same_secret(request.headers[SIGNATURE_HEADER], expected):
        raise ApiError(401, "bad_signature", "the signature does not match the body",
                       SIGNATURE_HEADER)


# -- the OpenAPI document -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One route as the OpenAPI document describes it."""

    method: str
    path: str
    summary: str
    responses: Mapping[int, tuple[type[BaseModel] | None, str]]
    body: type[BaseModel] | None = None
    body_required: bool = True  # False: no body at all means an empty object
    auth: Sequence[str] = ("bearer",)
    # A request body that is not one JSON model (a script as YAML or JSON): its "content".
    content: Mapping[str, Any] | None = None
    parameters: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    tag: str = "api"
    # Other media types a response may come as, by status (CSV by Accept: text/csv).
    media: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "ADMIN_TOKEN or one of API_TOKENS"},
    "signature": {"type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
                  "description": f"sha256=<hex HMAC-SHA256 with TRIGGER_SECRET of "
                                 f"'<{TIMESTAMP_HEADER}>.<raw body>'>; {TIMESTAMP_HEADER} "
                                 f"within {REPLAY_WINDOW} s of the server's clock"},
}


def openapi_document(operations: Sequence[Operation], *, version: str) -> dict[str, Any]:
    models = {model for op in operations for model in
              [op.body, *(m for m, _ in op.responses.values())] if model is not None}
    models.add(ErrorBody)
    refs, schemas = models_json_schema(
        [(model, "validation" if any(op.body is model for op in operations) else
          "serialization") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {}
        for status, (model, description) in sorted(op.responses.items()):
            response: dict[str, Any] = {"description": description}
            if model is not None:
                mode: Literal["validation", "serialization"] = "serialization"
                response["content"] = {"application/json": {"schema": refs[model, mode]}}
            if status in op.media:
                response.setdefault("content", {}).update(op.media[status])
            responses[str(status)] = response
        errors = {"400": "the body is not JSON", "401": "not authenticated",
                  "413": f"the body is over {MAX_BODY // 1024} KiB",
                  "415": "the body is not application/json",
                  "422": "a field is missing or invalid (error.field names it)",
                  "503": "the database is unavailable for a moment: try again after "
                         "Retry-After seconds (error.code database_unavailable)",
                  "507": "the database's storage is full (error.code storage_full)"}
        for code, description in errors.items():
            if code == "401" and not op.auth:
                continue
            if code == "507" and op.method == "get":  # reads need no space
                continue
            if code in ("400", "413", "415") and op.body is None and op.content is None:
                continue
            if code == "422" and op.body is None and not op.parameters:
                continue
            responses.setdefault(code, {"description": description, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
        entry: dict[str, Any] = {"summary": op.summary, "tags": [op.tag],
                                 "operationId": f"{op.method}_{op.path}".replace("/", "_")
                                 .replace("{", "").replace("}", "").strip("_"),
                                 "responses": responses}
        if op.parameters:
            entry["parameters"] = list(op.parameters)
        if op.body is not None:
            entry["requestBody"] = {"required": op.body_required, "content": {
                "application/json": {"schema": refs[op.body, "validation"]}}}
        elif op.content is not None:
            entry["requestBody"] = {"required": True, "content": dict(op.content)}
        entry["security"] = [{scheme: []} for scheme in op.auth]
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Otklik API", "version": version,
                 "description": "Triggers, surveys and deliveries of the Otklik feedback bot. "
                                "Every error is {\"error\": {code, message, field}}."},
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {}),
                       "securitySchemes": SECURITY_SCHEMES},
    }


def number(value: str, high: int) -> int | None:
    """`value` as a whole number from 0 to `high`, or None. Decimal digits only: "²" is a
    digit int() cannot read; and no longer than `high`: int() refuses 4,300 digits, and
    PostgreSQL a number over its column's range."""
    if value.isdecimal() and len(value) <= len(str(high)) and int(value) <= high:
        return int(value)
    return None


def whole(value: str, name: str, low: int, high: int) -> int:
    """A whole-number parameter from `low` to `high`, or a 422 naming it; documented by
    `whole_schema` with the same bounds."""
    found = number(value, high)
    if found is None or found < low:
        raise ApiError(422, "invalid", f"{name}: a whole number from {low} to {high}", name)
    return found


def whole_schema(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def text_schema(longest: int, shortest: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": shortest, "maxLength": longest}


SURVEY_ID = {"type": "string", "pattern": ID_PATTERN, "maxLength": 64,
             "examples": ["post_call_csat"]}


def path_param(name: str, description: str, schema: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": dict(schema or {"type": "string"})}


def query_param(name: str, description: str, schema: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": dict(schema or {"type": "string"})}


class Strict(BaseModel):
    """A request body: unknown fields are an error (a typo should not pass silently)."""

    model_config = ConfigDict(extra="forbid")
