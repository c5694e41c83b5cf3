"""Survey scripts over real HTTP on loopback, on SQLite and PostgreSQL: read, store a new
version (validated as the CLI validates, errors naming line and field), versions, diff,
activate and deactivate; the running services start new dialogues on what is active."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from bot.services.surveys import NoSurvey, Who
from tests.e2e.trigger_support import SURVEYS, Api, serving

AUTH = {"Authorization": "Bearer admin-token-for-tests"}
NPS = (SURVEYS / "nps.yaml").read_text(encoding="utf-8")
NEW_QUESTION = "How likely are you to recommend Otklik, 0-10?"
CHANGED = NPS.replace("How likely are you to recommend us to a friend or colleague, 0-10?",
                      NEW_QUESTION)
BROKEN = NPS.replace("    type: text\n", "    type: essay\n").replace(
    "    max_length: 2000\n", "    max_length: lots\n")


@pytest.fixture
async def api(db_url: str) -> Any:
    async with serving(db_url) as api:
        yield api


async def put(api: Api, survey: str, source: str, kind: str = "application/yaml",
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = await api.client.put(f"/api/v1/surveys/{survey}", data=source.encode(),
                                    headers={"Content-Type": kind, **AUTH, **(headers or {})})
    return response.status, await response.json()


async def first_question(api: Api, chat: str) -> str:
    outcome = await api.services.surveys.begin(Who("telegram", chat), "nps")
    return outcome.prompts[0].text


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/surveys/nps"), ("GET", "/api/v1/surveys/nps/versions"),
    ("GET", "/api/v1/surveys/nps/diff"), ("PUT", "/api/v1/surveys/nps"),
    ("POST", "/api/v1/surveys/nps/activate"), ("POST", "/api/v1/surveys/nps/deactivate"),
    ("GET", "/api/v1/audit")])
async def test_auth(api: Api, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await api.client.request(method, path, data=CHANGED.encode(), headers={
            "Content-Type": "application/yaml", **headers})
        assert response.status == 401
        assert (await response.json())["error"]["field"] == "Authorization"
    _, versions = await api.get("/api/v1/surveys/nps/versions")
    assert [v["version"] for v in versions["versions"]] == [1]  # nothing was stored
    assert (await api.get("/api/v1/surveys/nps"))[1]["active"] is True
    response = await api.client.request(method, path, data=CHANGED.encode(), headers={
        "Content-Type": "application/yaml", **AUTH})
    assert response.status in (200, 201)


async def test_read_a_version(api: Api) -> None:
    status, body = await api.get("/api/v1/surveys/nps")
    assert status == 200
    assert (body["id"], body["version"], body["active"], body["created_by"]) == (
        "nps", 1, True, "tests")
    assert body["source"] == NPS
    assert body["title"]["en"] == "Net Promoter Score"
    assert body["body"]["steps"][0]["id"] == "score"
    assert (await api.get("/api/v1/surveys/nps?version=1"))[1] == body
    for path, status_field in (("/api/v1/surveys/nps?version=2", (404, "version")),
                               ("/api/v1/surveys/nope", (404, "id")),
                               ("/api/v1/surveys/nope/versions", (404, "id")),
                               ("/api/v1/surveys/nps?version=abc", (422, "version")),
                               ("/api/v1/surveys/nps?version=0", (422, "version"))):
        status, body = await api.get(path)
        assert (status, body["error"]["field"]) == status_field, path


async def test_a_new_version_is_stored_kept_diffed_and_used_by_new_dialogues(
        api: Api) -> None:
    assert await first_question(api, "501") != NEW_QUESTION
    status, stored = await put(api, "nps", CHANGED)
    assert (status, stored) == (201, {"id": "nps", "version": 2, "changed": True})
    # The same script again, as YAML or as JSON: nothing new is stored.
    assert await put(api, "nps", CHANGED) == (200, {"id": "nps", "version": 2,
                                                    "changed": False})
    as_json = json.dumps(yaml.safe_load(CHANGED), ensure_ascii=False, indent=2)
    assert (await put(api, "nps", as_json, "application/json"))[1]["changed"] is False

    _, versions = await api.get("/api/v1/surveys/nps/versions")
    assert [(v["version"], v["active"], v["created_by"]) for v in versions["versions"]] == [
        (1, False, "tests"), (2, True, "admin")]
    _, latest = await api.get("/api/v1/surveys/nps")
    assert (latest["version"], latest["source"]) == (2, CHANGED)
    assert latest["body"]["version"] == 2
    _, old = await api.get("/api/v1/surveys/nps?version=1")
    assert old["source"] == NPS

    status, diff = await api.get("/api/v1/surveys/nps/diff?from=1&to=2")
    assert status == 200
    assert (diff["from"], diff["to"]) == (1, 2)
    lines = diff["diff"].splitlines()
    assert lines[:2] == ["--- nps v1", "+++ nps v2"]
    assert f'+      en: "{NEW_QUESTION}"' in lines
    assert [line for line in lines if line.startswith(("+", "-"))][2:] == [
        '-      en: "How likely are you to recommend us to a friend or colleague, 0-10?"',
        f'+      en: "{NEW_QUESTION}"']
    assert (await api.get("/api/v1/surveys/nps/diff"))[1] == diff  # latest vs the one before
    assert (await api.get("/api/v1/surveys/nps/diff?from=2&to=2"))[1]["diff"] == ""
    for query, field in (("from=3", "from"), ("to=9", "to"), ("from=x", "from")):
        status, body = await api.get(f"/api/v1/surveys/nps/diff?{query}")
        assert body["error"]["field"] == field

    # The running services see the new version at once.
    assert await first_question(api, "502") == NEW_QUESTION
    _, listed = await api.get("/api/v1/surveys")
    assert {s["id"]: s["version"] for s in listed["surveys"]}["nps"] == 2

    _, audit = await api.get("/api/v1/audit?action=script.stored&target=nps")
    entry, loaded = audit["items"]  # newest first: this PUT, then the example file's load
    assert (loaded["actor"], loaded["details"]["version"]) == ("tests", 1)
    assert (entry["actor"], entry["details"]["before"], entry["details"]["version"],
            entry["details"]["path"]) == ("admin", 1, 2, "api")


async def test_a_broken_script_is_refused_with_every_line_and_field(api: Api) -> None:
    status, body = await put(api, "nps", BROKEN)
    assert status == 422
    error = body["error"]
    assert error["code"] == "invalid_script"
    issues = {(i["line"], i["field"]) for i in error["issues"]}
    type_line = BROKEN.splitlines().index("    type: essay") + 1
    length_line = BROKEN.splitlines().index("    max_length: lots") + 1
    assert (type_line, "steps.1.type") in issues
    assert error["field"] == "steps.1.type"
    assert f"nps.yaml:{type_line}: steps.1.type: unknown step type 'essay'" in error["message"]
    status, body = await put(api, "nps", NPS.replace("    max_length: 2000\n",
                                                       "    max_length: lots\n"))
    assert status == 422
    [issue] = body["error"]["issues"]
    assert (issue["line"], issue["field"]) == (length_line, "steps.1.max_length")
    assert body["error"]["message"].startswith(f"nps.yaml:{length_line}: steps.1.max_length: ")

    status, body = await put(api, "nps", "id: nps\nsteps: [oops", "text/yaml")
    assert (status, body["error"]["issues"][0]["line"]) == (422, 2)
    status, body = await put(api, "nps", '{"id": "nps",}', "application/json")
    assert (status, body["error"]["issues"][0]["line"]) == (422, 1)
    status, body = await put(api, "other", CHANGED)
    assert (status, body["error"]["field"], body["error"]["code"]) == (422, "id", "id_mismatch")
    status, body = await put(api, "nps", CHANGED, "text/plain")
    assert (status, body["error"]["field"]) == (415, "Content-Type")
    response = await api.client.put("/api/v1/surveys/nps", data=b"id: \xff\xfe",
                                    headers={"Content-Type": "application/yaml", **AUTH})
    assert (response.status, (await response.json())["error"]["field"]) == (400, "body")

    _, versions = await api.get("/api/v1/surveys/nps/versions")
    assert [v["version"] for v in versions["versions"]] == [1]
    _, listed = await api.get("/api/v1/surveys/other")
    assert listed["error"]["field"] == "id"


async def test_deactivate_and_activate(api: Api) -> None:
    await put(api, "nps", CHANGED)
    status, body = await api.post("/api/v1/surveys/nps/deactivate", {})
    assert (status, body) == (200, {"id": "nps", "active_version": None, "before": 2})
    with pytest.raises(NoSurvey):
        await first_question(api, "601")
    status, refused = await api.post("/api/v1/triggers", {
        "survey": "nps", "idempotency_key": "off", "customer": {"external_id": "x"}})
    assert (status, refused["error"]["field"]) == (422, "survey")
    _, listed = await api.get("/api/v1/surveys")
    assert "nps" not in {s["id"] for s in listed["surveys"]}

    status, body = await api.post("/api/v1/surveys/nps/activate?version=1", {})
    assert (status, body) == (200, {"id": "nps", "active_version": 1, "before": None})
    assert await first_question(api, "602") != NEW_QUESTION
    status, body = await api.post("/api/v1/surveys/nps/activate", {})
    assert (status, body) == (200, {"id": "nps", "active_version": 2, "before": 1})
    assert await first_question(api, "603") == NEW_QUESTION
    for path, expected in (("/api/v1/surveys/nps/activate?version=7", (404, "version")),
                           ("/api/v1/surveys/nps/activate?version=-1", (422, "version")),
                           ("/api/v1/surveys/none/activate", (404, "id")),
                           ("/api/v1/surveys/none/deactivate", (404, "id"))):
        status, body = await api.post(path, {})
        assert (status, body["error"]["field"]) == expected, path

    _, audit = await api.get("/api/v1/audit?target=nps")
    assert [(e["action"], e["details"].get("before"), e["details"].get("after"))
            for e in audit["items"]] == [
        ("script.activated", 1, 2), ("script.activated", None, 1),
        ("script.deactivated", 2, None), ("script.stored", 1, None),
        ("script.stored", None, None)]


async def test_the_audit_log_pages(api: Api) -> None:
    for _ in range(3):
        await api.post("/api/v1/surveys/nps/deactivate", {})
        await api.post("/api/v1/surveys/nps/activate", {})
    _, everything = await api.get("/api/v1/audit?limit=500")
    expected = [e["id"] for e in everything["items"]]
    assert len(expected) == 6 + 4  # and the example scripts' script.stored rows
    assert expected == sorted(expected, reverse=True)
    seen: list[int] = []
    _, page = await api.get("/api/v1/audit?limit=4")
    seen += [e["id"] for e in page["items"]]
    while page["next_cursor"] is not None:
        _, page = await api.get(f"/api/v1/audit?limit=4&cursor={page['next_cursor']}")
        seen += [e["id"] for e in page["items"]]
    assert seen == expected
    for query, field in (("limit=0", "limit"), ("cursor=x", "cursor"), ("actor=me", "actor")):
        status, body = await api.get(f"/api/v1/audit?{query}")
        assert (status, body["error"]["field"]) == (422, field)


async def test_the_openapi_document_describes_the_admin_routes(api: Api) -> None:
    document = await (await api.client.get("/openapi.json")).json()
    validate(document)
    paths = document["paths"]
    assert {"/api/v1/answers", "/api/v1/customers", "/api/v1/customers/{external_id}/export",
            "/api/v1/customers/{external_id}", "/api/v1/surveys/{id}",
            "/api/v1/surveys/{id}/versions", "/api/v1/surveys/{id}/diff",
            "/api/v1/surveys/{id}/activate", "/api/v1/surveys/{id}/deactivate",
            "/api/v1/audit"} <= set(paths)
    put_op = paths["/api/v1/surveys/{id}"]["put"]
    assert {"application/yaml", "text/yaml", "application/json"} <= set(
        put_op["requestBody"]["content"])
    assert {"200", "201", "401", "415", "422"} <= set(put_op["responses"])
    assert "delete" in paths["/api/v1/customers/{external_id}"]
