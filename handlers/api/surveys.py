"""Survey scripts over the API: read a version, list versions, diff two, store a new one
(validated like `otklik scripts validate`, stored like `otklik scripts load`), and switch a
survey on or off. The list of active surveys is GET /api/v1/surveys (triggers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from bot.keys import ADMIN
from bot.services.admin import AdminError, BadScript, Mismatch, Unknown
from handlers.api.core import (
    MAX_VERSION,
    SURVEY_ID,
    ApiError,
    Operation,
    actor_of,
    body,
    path_param,
    query_param,
    whole,
    whole_schema,
)

routes = web.RouteTableDef()
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class ScriptVersion(BaseModel):
    id: str
    version: int
    active: bool
    title: dict[str, str]
    source: str = Field(description="the script as it was written (YAML or JSON)")
    body: dict[str, Any] = Field(description="the validated script as data")
    checksum: str
    created_by: str
    created_at: datetime


class VersionSummary(BaseModel):
    version: int
    active: bool
    checksum: str
    created_by: str
    created_at: datetime


class VersionList(BaseModel):
    id: str
    versions: list[VersionSummary]


class ScriptDiff(BaseModel):
    id: str
    from_version: int = Field(alias="from")
    to_version: int = Field(alias="to")
    diff: str = Field(description="unified diff of the sources; empty when they are equal")


class Stored(BaseModel):
    id: str
    version: int
    changed: bool = Field(description="false: the same script as the latest version, "
                                      "nothing stored")


class Activation(BaseModel):
    id: str
    active_version: int | None
    before: int | None = Field(description="the version active before")


class ScriptIssue(BaseModel):
    line: int
    field: str
    message: str


class ScriptProblem(BaseModel):
    code: str
    message: str = Field(description="every issue as FILE:LINE: field.path: message")
    field: str
    issues: list[ScriptIssue]


class ScriptProblems(BaseModel):
    error: ScriptProblem


SURVEY = path_param("id", "the survey's id", SURVEY_ID)
VERSION_NUMBER = whole_schema(1, MAX_VERSION)
VERSION = query_param("version", "a stored version (default: the latest)", VERSION_NUMBER)
NOT_FOUND = (None, "no such survey or version (error.field says which)")
TEXT = {"type": "string"}
OPERATIONS = [
    Operation("get", "/api/v1/surveys/{id}", "A stored version of a survey script",
              {200: (ScriptVersion, "the version"), 404: NOT_FOUND}, tag="surveys",
              parameters=[SURVEY, VERSION], operation_id="getSurveyVersion",
              description="A stored version of a survey script (default: the latest): its "
                          "source as written, the validated script, its checksum and who "
                          "stored it when."),
    Operation("get", "/api/v1/surveys/{id}/versions", "Every stored version of a survey",
              {200: (VersionList, "oldest first"), 404: NOT_FOUND}, tag="surveys",
              parameters=[SURVEY], operation_id="listSurveyVersions",
              description="Every stored version of a survey, oldest first, and which one "
                          "is active."),
    Operation("get", "/api/v1/surveys/{id}/diff", "What changed between two versions",
              {200: (ScriptDiff, "a unified diff"), 404: NOT_FOUND}, tag="surveys",
              parameters=[SURVEY,
                          query_param("from", "default: the version before `to`",
                                      VERSION_NUMBER),
                          query_param("to", "default: the latest", VERSION_NUMBER)],
              operation_id="diffSurveyVersions",
              description="A unified diff of two stored versions' sources (default: the "
                          "latest and the version before it)."),
    Operation("put", "/api/v1/surveys/{id}",
              "Store a script as the survey's new active version (unless unchanged)",
              {201: (Stored, "stored as a new version, now active"),
               200: (Stored, "unchanged: the latest version is this script"),
               422: (ScriptProblems, "the script does not validate: every issue with its "
                                     "line and field")},
              tag="surveys", parameters=[SURVEY],
              content={**{kind: {"schema": TEXT} for kind in YAML_TYPES},
                       "application/json": {"schema": {"type": "object"}}},
              operation_id="storeSurvey",
              description="Validates a script, sent as YAML or JSON, as `otklik scripts "
                          "validate` does, and stores it as the survey's new active "
                          "version; the same script as the latest version stores nothing "
                          "(200). One that does not validate is a 422 listing every issue "
                          "with its line and field. Audited."),
    Operation("post", "/api/v1/surveys/{id}/activate",
              "Start new dialogues on a version (default: the latest)",
              {200: (Activation, "active"), 404: NOT_FOUND}, tag="surveys",
              parameters=[SURVEY, VERSION], operation_id="activateSurvey",
              description="Makes a stored version (default: the latest) the one new "
                          "dialogues of the survey start on. Audited."),
    Operation("post", "/api/v1/surveys/{id}/deactivate",
              "Start no new dialogues of this survey (those under way finish)",
              {200: (Activation, "switched off"), 404: NOT_FOUND}, tag="surveys",
              parameters=[SURVEY], operation_id="deactivateSurvey",
              description="Starts no new dialogues of the survey; those under way finish. "
                          "Audited."),
]


@routes.get("/api/v1/surveys/{id}")
async def get_survey(request: web.Request) -> web.Response:
    version = _version(request, "version")
    with _refusals():
        row = await request.app[ADMIN].script(request.match_info["id"], version)
    return web.json_response(ScriptVersion(
        id=row.survey_id, version=row.version, active=row.active, title=row.title,
        source=row.source, body=row.body, checksum=row.checksum, created_by=row.created_by,
        created_at=row.created_at).model_dump(mode="json"))


@routes.get("/api/v1/surveys/{id}/versions")
async def get_versions(request: web.Request) -> web.Response:
    survey_id = request.match_info["id"]
    with _refusals():
        rows = await request.app[ADMIN].versions(survey_id)
    return web.json_response(VersionList(id=survey_id, versions=[
        VersionSummary.model_validate(row, from_attributes=True) for row in rows
    ]).model_dump(mode="json"))


@routes.get("/api/v1/surveys/{id}/diff")
async def get_diff(request: web.Request) -> web.Response:
    survey_id = request.match_info["id"]
    start, end = _version(request, "from"), _version(request, "to")
    with _refusals():
        start, end, diff = await request.app[ADMIN].diff(survey_id, start, end)
    return web.json_response(ScriptDiff.model_validate(
        {"id": survey_id, "from": start, "to": end, "diff": diff}).model_dump(
        mode="json", by_alias=True))


@routes.put("/api/v1/surveys/{id}")
async def put_survey(request: web.Request) -> web.Response:
    actor = actor_of(request)
    kind = request.content_type
    if kind not in (*YAML_TYPES, "application/json"):
        raise ApiError(415, "unsupported_media_type", "send the script as application/yaml "
                       "(or text/yaml) or application/json", "Content-Type")
    try:
        source = (await body(request)).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_encoding", "the script must be UTF-8", "body") from None
    survey_id = request.match_info["id"]
    try:
        loaded = await request.app[ADMIN].store_script(
            survey_id, source, is_json=kind == "application/json", actor=actor)
    except BadScript as error:
        return web.json_response(ScriptProblems(error=ScriptProblem(
            code="invalid_script", message=str(error), field=error.field,
            issues=[ScriptIssue(line=issue.line or 1, field=issue.path or "<script>",
                                message=issue.message) for issue in error.issues]
        )).model_dump(mode="json"), status=422)
    except Mismatch as error:
        raise ApiError(422, "id_mismatch", str(error), error.field) from None
    return web.json_response(
        Stored(id=loaded.survey_id, version=loaded.version, changed=loaded.changed)
        .model_dump(mode="json"), status=201 if loaded.changed else 200)


@routes.post("/api/v1/surveys/{id}/activate")
async def post_activate(request: web.Request) -> web.Response:
    actor = actor_of(request)
    survey_id = request.match_info["id"]
    version = _version(request, "version")
    with _refusals():
        before, active = await request.app[ADMIN].activate(survey_id, version, actor=actor)
    return web.json_response(Activation(id=survey_id, active_version=active, before=before)
                             .model_dump(mode="json"))


@routes.post("/api/v1/surveys/{id}/deactivate")
async def post_deactivate(request: web.Request) -> web.Response:
    actor = actor_of(request)
    survey_id = request.match_info["id"]
    with _refusals():
        before = await request.app[ADMIN].deactivate(survey_id, actor=actor)
    return web.json_response(Activation(id=survey_id, active_version=None, before=before)
                             .model_dump(mode="json"))


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except Unknown as error:
        raise ApiError(404, "not_found", str(error), error.field) from None
    except AdminError as error:
        raise ApiError(422, "invalid", str(error), error.field) from None


def _version(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    return whole(value, name, 1, MAX_VERSION)
