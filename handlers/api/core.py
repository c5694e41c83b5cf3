"""What every JSON route shares: errors as `{"error": {code, message, field}}`, request
bodies parsed by pydantic models, authentication, and the OpenAPI document, generated from
the same models the handlers parse and answer with, so it cannot drift from them."""

from __future__ import annotations

import json
import logging
import math
import re
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

from bot.keys import ADMIN, SETTINGS

# Re-exported: triggers are signed as outbound webhooks are.
from bot.signing import SIGNATURE_HEADER as SIGNATURE_HEADER
from bot.signing import TIMESTAMP_HEADER as TIMESTAMP_HEADER
from bot.signing import same_secret
from bot.signing import signature as signature
from conversations.script import ID_PATTERN
from handlers.errors import HandlerError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REPLAY_WINDOW = 300  # seconds either way between the sender's clock and ours
MAX_ID = 2**62  # the largest row id or id cursor a parameter may name
MAX_VERSION = 2**31 - 1  # a script's version: a 32-bit INTEGER on PostgreSQL
NUL = "\x00"
SURROGATE = re.compile("[\ud800-\udfff]")
# Larger request bodies are refused with a 413 (a trigger is a few hundred bytes).
MAX_BODY = 256 * 1024


class ApiError(HandlerError):
    """An error the API answers with: its status, a stable code, a message for a human
    and the field at fault (a dotted path into the body, a header or a parameter)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class ErrorDetail(BaseModel):
    """The API's error: a stable code, a message for a human, the field at fault."""

    code: str = Field(examples=["invalid"])
    message: str
    field: str | None = None


class Error(BaseModel):
    """The body of every error the API answers with (`Error` in the OpenAPI document)."""

    error: ErrorDetail


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "field": field}},
                             status=status, headers=headers)


def _field_of(error: ValidationError) -> tuple[str, str]:
    first = error.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return path, f"{path}: {message}" if path else message


@dataclass(frozen=True, slots=True)
class _Unfit:
    """A number no field may take, where the body had it: NaN, Infinity or -Infinity
    (JSON has none), one too big for a double (1e400, infinity to Python), or a whole
    number past 64 bits. Python's parser reads them all; stored, PostgreSQL's JSON would
    refuse the first ones and every reader of the data would trip on the rest."""

    text: str

    @property
    def problem(self) -> str:
        shown = self.text if len(self.text) <= 40 else self.text[:20] + "..."
        return f"must be a finite number within 64 bits, not {shown}"


class _Twice(dict[str, object]):
    """An object in which a key came twice: JSON says nothing of which one counts."""

    key: str


def _finite(text: str) -> float | _Unfit:
    number = float(text)
    return number if math.isfinite(number) else _Unfit(text)


def _whole(text: str) -> int | _Unfit:
    # Checked by length first: int() of thousands of digits takes long, or refuses.
    number = int(text) if len(text) <= 20 else None
    return number if number is not None and -2**63 <= number < 2**63 else _Unfit(text)


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    made = dict(pairs)
    if len(made) == len(pairs):
        return made
    twice = _Twice(made)
    twice.key = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
    return twice


def _text_fault(text: str) -> str | None:
    if NUL in text:
        return "must not contain a NUL character"
    if SURROGATE.search(text):  # a \ud800 escape alone: no database can store it
        return "must be Unicode text: a lone surrogate escape is not a character"
    return None


def _fault_at(data: object) -> tuple[str, str] | None:
    """The first thing parsed JSON must not hold, as (dotted path, message): a NUL
    character or a lone surrogate in a string or a key, a number no field takes (_Unfit),
    a key twice in one object.
    A loop, not recursion: the body may be nested as deeply as json.loads allows."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and (problem := _text_fault(value)):
            return path, problem
        if isinstance(value, _Unfit):
            return path, value.problem
        if isinstance(value, _Twice):
            where = f"{path}.{value.key}" if path else value.key
            return where, "this key comes twice in one object; send it once"
        pairs = (value.items() if isinstance(value, dict) else
                 enumerate(value) if isinstance(value, list) else ())
        for key, item in pairs:
            where = f"{path}.{key}" if path else str(key)
            if problem := _text_fault(str(key)):
                return where, problem
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


# Codings a request body may come in; aiohttp's own decoding is off (bot.app), as it lets
# an unknown coding through undecoded and answers a false one with a 500 or plain text.
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_DECODED = web.RequestKey("decoded_body", bytes)


async def body(request: web.Request) -> bytes:
    """The request body, decoded as its Content-Encoding says: gzip, deflate or none;
    anything else, or a body that is not what the header says, is a 422 naming the header."""
    if _DECODED in request:
        return request[_DECODED]
    raw = await request.read()
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding in ("", "identity"):
        decoded = raw
    elif coding not in _CODINGS:
        raise ApiError(422, "invalid", "Content-Encoding: only gzip or deflate (or none) is "
                       f"accepted, not {coding[:40]!r}", "Content-Encoding")
    else:
        decoder = zlib.decompressobj(_CODINGS[coding])
        try:
            decoded = decoder.decompress(raw, MAX_BODY + 1)
        except zlib.error:
            decoded = b""
        if len(decoded) > MAX_BODY:
            raise ApiError(413, "too_large", f"the body is over {MAX_BODY:,} bytes decoded",
                           "body")
        if not decoder.eof or decoder.unused_data:
            raise ApiError(422, "invalid", f"Content-Encoding: the body is not one {coding} "
                           "stream", "Content-Encoding")
    request[_DECODED] = decoded
    return decoded


def loads(raw: bytes) -> object:
    """Parsed JSON, or a 400 if it does not parse and a 422 naming the path of a NUL
    character, NaN, Infinity or a key that comes twice in one object."""
    try:
        data = json.loads(raw, parse_constant=_Unfit, parse_float=_finite,
                          parse_int=_whole, object_pairs_hook=_pairs)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {error}", "body") from None
    except RecursionError:
        raise ApiError(400, "bad_json", "the body is nested too deeply", "body") from None
    if (fault := _fault_at(data)) is not None:
        where, message = fault
        raise ApiError(422, "invalid", f"{where or 'body'}: {message}", where or "body")
    return data


async def parse(request: web.Request, model: type[M]) -> M:
    """The body as `model`: 415 unless JSON, 400 if it does not parse, 422 naming the first
    field that does not validate. JSON's types are taken as they are: 0 is not false and
    "5" is not 5, as the OpenAPI document says (strings still carry dates and durations)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json",
                       "Content-Type")
    raw = await body(request)
    loads(raw)
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


class Scope(Enum):
    """What a route needs. ADMIN_TOKEN reaches every route; an integration token
    (API_TOKENS) and a trigger's signature reach TRIGGERS only; a dashboard session reaches
    the dashboard only (frame.py), never the API, which reads only Authorization."""

    ANYONE = "anyone"  # the widget's: allowed origins and a rate limit instead
    TRIGGERS = "triggers"
    ADMIN = "admin"
    MONITORING = "monitoring"  # /metrics: ADMIN_TOKEN once one is set, else anyone


# Every route of the API, and /metrics, with the scope it needs. The app refuses to start
# with one missing (check_scopes): a new route must say who may call it.
SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/api/v1/triggers"): Scope.TRIGGERS,
    ("POST", "/api/v1/widget/{survey}/start"): Scope.ANYONE,
    ("POST", "/api/v1/widget/{survey}/answer"): Scope.ANYONE,
    ("OPTIONS", "/api/v1/widget/{survey}/start"): Scope.ANYONE,
    ("OPTIONS", "/api/v1/widget/{survey}/answer"): Scope.ANYONE,
    ("GET", "/metrics"): Scope.MONITORING,
    ("GET", "/api/v1/surveys"): Scope.ADMIN,
    ("GET", "/api/v1/surveys/{id}"): Scope.ADMIN,
    ("GET", "/api/v1/surveys/{id}/versions"): Scope.ADMIN,
    ("GET", "/api/v1/surveys/{id}/diff"): Scope.ADMIN,
    ("PUT", "/api/v1/surveys/{id}"): Scope.ADMIN,
    ("POST", "/api/v1/surveys/{id}/activate"): Scope.ADMIN,
    ("POST", "/api/v1/surveys/{id}/deactivate"): Scope.ADMIN,
    ("GET", "/api/v1/deliveries"): Scope.ADMIN,
    ("GET", "/api/v1/deliveries/{id}"): Scope.ADMIN,
    ("GET", "/api/v1/campaigns"): Scope.ADMIN,
    ("POST", "/api/v1/campaigns"): Scope.ADMIN,
    ("POST", "/api/v1/campaigns/{id}/run"): Scope.ADMIN,
    ("GET", "/api/v1/answers"): Scope.ADMIN,
    ("GET", "/api/v1/metrics"): Scope.ADMIN,
    ("GET", "/api/v1/customers"): Scope.ADMIN,
    ("GET", "/api/v1/customers/{external_id}/export"): Scope.ADMIN,
    ("DELETE", "/api/v1/customers/{external_id}"): Scope.ADMIN,
    ("GET", "/api/v1/alerts"): Scope.ADMIN,
    ("GET", "/api/v1/alerts/{id}"): Scope.ADMIN,
    ("POST", "/api/v1/alerts/{id}/take"): Scope.ADMIN,
    ("POST", "/api/v1/alerts/{id}/notes"): Scope.ADMIN,
    ("POST", "/api/v1/alerts/{id}/reply"): Scope.ADMIN,
    ("POST", "/api/v1/alerts/{id}/resolve"): Scope.ADMIN,
    ("GET", "/api/v1/audit"): Scope.ADMIN,
}
# Who acts, for the audit log: "admin", "token:<name>", "signature", or on the dashboard
# "dashboard:<name>" (a name typed at login can never pass for a token).
ACTOR = web.RequestKey("actor", str)


def _key(method: str, path: str) -> tuple[str, str]:
    return ("GET" if method == "HEAD" else method, path)


def check_scopes(app: web.Application) -> None:
    """Refuses an app with a route of the API that SCOPES does not name."""
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if (path.startswith("/api/") or path == "/metrics") and \
                _key(route.method, path) not in SCOPES:
            raise RuntimeError(f"{route.method} {path}: say who may call it in "
                               "handlers.api.core.SCOPES")


def scope_of(request: web.Request) -> Scope | None:
    """The scope of the route matched; None off the API (pages and the dashboard)."""
    resource = request.match_info.route.resource
    return None if resource is None else SCOPES.get(_key(request.method,
                                                         resource.canonical))


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Checks the credential a route of the API needs and records who acts (ACTOR). None,
    or a wrong one, is a 401, which the failed-attempts limit counts; a right integration
    token on another route is a 403, which it does not (the token is no guess), and which
    the audit log records: an integration reaching past its scope is worth knowing of."""
    scope = scope_of(request)
    if scope is Scope.TRIGGERS and SIGNATURE_HEADER in request.headers:
        await _signed(request)
        request[ACTOR] = "signature"
    elif scope in (Scope.TRIGGERS, Scope.ADMIN) or (
            scope is Scope.MONITORING and request.app[SETTINGS].admin_token is not None):
        who = _bearer(request)
        if scope is not Scope.TRIGGERS and who != "admin":
            route = request.match_info.route.resource
            target = f"{request.method} {route.canonical if route else request.path}"
            log.warning("%s refused on %s: an API token only posts triggers", who, target)
            await request.app[ADMIN].audit(who, "api.forbidden", target)
            raise ApiError(403, "forbidden", f"{who} only posts triggers: this route needs "
                           "ADMIN_TOKEN", "Authorization")
        request[ACTOR] = who
    return await handler(request)


def actor_of(request: web.Request) -> str:
    """Who acts on this request (see ACTOR)."""
    return request[ACTOR]


def _presented(request: web.Request) -> str | None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented.strip() else None


def token_owner(request: web.Request) -> str | None:
    """Whose token Authorization carries: "admin" or "token:<name>"; None if nobody's."""
    settings = request.app[SETTINGS]
    named = [("admin", settings.admin_token),
             *((f"token:{name}", token) for name, token in settings.api_tokens.items())]
    presented = _presented(request)
    # Every configured token is compared, in constant time, whatever matches first.
    matches = [who for who, token in named if token is not None and presented is not None
               and same_secret(presented, token.get_secret_value())]
    return matches[0] if matches else None


def _bearer(request: web.Request) -> str:
    """token_owner, or a 401 if nobody's."""
    if (who := token_owner(request)) is None:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN> (or, "
                       "to post triggers, an API token)", "Authorization")
    return who


async def _signed(request: web.Request) -> None:
    """A trigger signed with TRIGGER_SECRET, within the replay window."""
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
    expected = signature(secret.get_secret_value().encode(), stamp, await body(request))
    if not same_secret(request.headers[SIGNATURE_HEADER], expected):
        raise ApiError(401, "bad_signature", "the signature does not match the body",
                       SIGNATURE_HEADER)


# -- the OpenAPI document -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One route as the OpenAPI document describes it. The error statuses every route of
    its kind may answer (a 401, a 422, a 503...) are added by openapi_document; `responses`
    adds what the handler itself answers (a 404, a 409) and may say more of a shared one."""

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
    # A generated client names its function after it (createTrigger: create_trigger), so
    # renaming one breaks every client generated before: never change one.
    operation_id: str = field(kw_only=True)
    # What the route does, for an integrator; who may call it is added from SCOPES.
    description: str = field(kw_only=True)


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "ADMIN_TOKEN, which every route takes; POST /api/v1/triggers "
                              "also takes one of API_TOKENS"},
    "signature": {"type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
                  "description": f"sha256=<hex HMAC-SHA256 with TRIGGER_SECRET of "
                                 f"'<{TIMESTAMP_HEADER}>.<raw body>'>; {TIMESTAMP_HEADER} "
                                 f"within {REPLAY_WINDOW} s of the server's clock"},
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                               "schema": {"type": "integer", "minimum": 0}}}
# Who may call a route, by its scope (None: a route off the API, /healthz), said once for
# every operation's description.
WHO_MAY: dict[Scope | None, str] = {
    None: "Needs no credential.",
    Scope.ADMIN: "Needs ADMIN_TOKEN as `Authorization: Bearer`; an integration token of "
                 "API_TOKENS gets a 403.",
    Scope.TRIGGERS: "Takes ADMIN_TOKEN or an integration token of API_TOKENS as "
                    "`Authorization: Bearer`, or instead an HMAC-SHA256 signature of the body "
                    f"with TRIGGER_SECRET ({SIGNATURE_HEADER} and {TIMESTAMP_HEADER}, within "
                    f"{REPLAY_WINDOW // 60} minutes of the server's clock).",
    Scope.ANYONE: "Needs no credential: limited to ANONYMOUS_RATE requests a minute per "
                  "address, and cross-origin only from WIDGET_ORIGINS.",
}


def _shared_errors(op: Operation) -> dict[int, str]:
    """The error statuses the shared middlewares and helpers may answer `op` with, whatever
    its handler does: each comes as the Error body, but only under /api/ (elsewhere, as on
    /healthz, a refusal is plain text)."""
    if not op.path.startswith("/api/"):
        return {}
    scope = SCOPES.get(_key(op.method.upper(), op.path))
    reads_body = op.body is not None or op.content is not None
    errors = {
        400: "the body does not parse: not JSON (error.code bad_json), or not UTF-8",
        401: "no credential, or a wrong one (error.field names the header)",
        403: ("an integration token of API_TOKENS: this route needs ADMIN_TOKEN"
              if scope is Scope.ADMIN else
              "an Origin not in WIDGET_ORIGINS (error.code origin_not_allowed)"),
        413: f"the body is over {MAX_BODY // 1024} KiB (decoded)",
        415: "the body is not of a media type this route takes (Content-Type)",
        422: "a field, parameter or header is invalid or missing (error.field names it)",
        429: ("too many requests from this address: over ANONYMOUS_RATE a minute, or over "
              "FAILED_ATTEMPTS wrong secrets a minute"
              if scope is Scope.ANYONE else
              "over FAILED_ATTEMPTS wrong secrets a minute came from this address: every "
              "request presenting a secret is refused until the minute is over "
              "(error.code rate_limited)"),
        503: "the database is unavailable for a moment: nothing was saved; try again after "
             "Retry-After seconds (error.code database_unavailable)",
        507: "the database's storage is full (error.code storage_full)",
    }
    if not op.auth:
        del errors[401]
    if scope not in (Scope.ADMIN, Scope.ANYONE):
        del errors[403]
    if not reads_body:
        for status in (400, 413, 415):
            del errors[status]
    if op.method == "get":  # reads need no space
        del errors[507]
    return errors


def _responses(op: Operation, ref_of: Callable[[type[BaseModel]], dict[str, Any]]
               ) -> dict[str, Any]:
    """`op`'s responses: its own and the shared errors, each error as the Error body."""
    declared = {**{status: (None, text) for status, text in _shared_errors(op).items()},
                **op.responses}
    responses: dict[str, Any] = {}
    for status, (model, description) in sorted(declared.items()):
        response: dict[str, Any] = {"description": description}
        schema = None if model is None else ref_of(model)
        if status >= 400 and op.path.startswith("/api/"):
            # A route's own error body (a script's issues) is one of two: any other refusal
            # of the same status (a Content-Encoding, an id mismatch) is the plain Error.
            schema = ERROR_REF if schema is None or schema == ERROR_REF else {
                "anyOf": [schema, ERROR_REF]}
        if schema is not None:
            response["content"] = {"application/json": {"schema": schema}}
        if status in op.media:
            response.setdefault("content", {}).update(op.media[status])
        if status in (429, 503) and op.path.startswith("/api/"):
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def openapi_document(operations: Sequence[Operation], *, version: str, server: str = "/"
                     ) -> dict[str, Any]:
    """The OpenAPI document of `operations`, served from `server` (PUBLIC_URL)."""
    ids = Counter(op.operation_id for op in operations)
    if twice := [name for name, n in ids.items() if n > 1]:
        raise ValueError(f"operationId {twice[0]} names two operations")
    models = {model for op in operations for model in
              [op.body, *(m for m, _ in op.responses.values())] if model is not None}
    models.add(Error)
    refs, schemas = models_json_schema(
        [(model, "validation" if any(op.body is model for op in operations) else
          "serialization") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        scope = SCOPES.get(_key(op.method.upper(), op.path))
        entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                                 "description": f"{op.description} {WHO_MAY[scope]}",
                                 "tags": [op.tag],
                                 "responses": _responses(
                                     op, lambda model: refs[model, "serialization"])}
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
                                "Every error under /api/ is the Error body: "
                                "{\"error\": {code, message, field}}."},
        "servers": [{"url": server}],
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
