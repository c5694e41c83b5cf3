"""GET /api/v1/metrics over real HTTP on loopback, on SQLite and PostgreSQL: admin only, the
figures the service computes from the rollups, and every bad filter refused with a JSON
error naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import SecretStr

from bot.services.metrics import MetricsQuery
from bot.services.scripts import script_of
from conversations.engine import Reply, advance, start
from storage.uow import Database, Store
from tests.e2e.trigger_support import NOON, Api, serving
from tests.integration.storage.support import record

API_TOKEN = "api-token-for-tests"


@pytest.fixture
async def api(db_url: str) -> Any:
    async with serving(db_url, api_tokens=[SecretStr(API_TOKEN)]) as api:
        yield api


async def answer(api: Api, score: str, *, agent: str, channel: str = "telegram",
                 segment: str = "") -> None:
    """A customer answers the example NPS survey's first question."""
    def run(store: Store) -> None:
        row = store.scripts.latest("nps")
        assert row is not None
        script = script_of(row)
        customer = store.customers.add(now=NOON)
        turn = start(script, now=NOON, context={"agent": agent},
                     customer={"segment": segment})
        dialogue = store.dialogues.start(customer.id, channel, "nps", script.version,
                                         turn.state.to_json(), now=NOON)
        turn = advance(script, turn.state, Reply.typed(score), NOON)
        record(store, dialogue, turn, NOON, script.timezone)

    await Database(api.services.factory).write(run)


async def test_metrics_need_the_admin_token(api: Api) -> None:
    # An API token posts triggers, but reads no metrics.
    for token, refused in ((None, 401), ("wrong", 401), (API_TOKEN, 403)):
        status, body = await api.get("/api/v1/metrics?survey=nps", token=token)
        assert status == refused
        assert body["error"]["field"] == "Authorization"
    status, _ = await api.get("/api/v1/metrics?survey=nps")
    assert status == 200


async def test_the_figures_are_the_services_and_the_raw_answers(api: Api) -> None:
    await answer(api, "10", agent="Anna")
    await answer(api, "9", agent="Anna", channel="web", segment="vip")
    await answer(api, "2", agent="Boris")

    status, body = await api.get("/api/v1/metrics?survey=nps&group_by=context.agent"
                                 "&from=2026-03-01&to=2026-03-31")
    assert status == 200
    assert body["overall"]["nps"] == {
        "promoters": 2, "passives": 0, "detractors": 1, "total": 3,
        "score": pytest.approx(100 / 3), "margin": None, "margin_note": "too few answers"}
    assert [(g["key"], g["nps"]["score"]) for g in body["groups"]] == [
        ("Anna", 100.0), ("Boris", -100.0)]
    asked = MetricsQuery.model_validate({"survey": "nps", "group_by": "context.agent",
                                         "from": "2026-03-01", "to": "2026-03-31"})
    expected = await api.services.figures.compute(asked)
    assert body == expected.model_dump(mode="json")
    assert expected == await api.services.figures.from_answers(asked)

    status, body = await api.get("/api/v1/metrics?survey=nps&context.agent=Anna"
                                 "&group_by=channel")
    assert status == 200
    assert [(g["key"], g["answers"]) for g in body["groups"]] == [("telegram", 1), ("web", 1)]
    status, body = await api.get("/api/v1/metrics?survey=nps&segment=vip&channel=web")
    assert (status, body["overall"]["answers"]) == (200, 1)
    status, body = await api.get("/api/v1/metrics?survey=nps&to=2026-03-01")
    assert (status, body["overall"]["answers"], body["groups"]) == (200, 0, [])


async def test_a_context_filter_as_key_colon_value_is_the_dotted_one(api: Api) -> None:
    await answer(api, "10", agent="Anna")
    await answer(api, "9", agent="Anna", channel="web")
    await answer(api, "2", agent="Boris")
    await answer(api, "0", agent="desk:7")
    dotted = await api.get("/api/v1/metrics?survey=nps&context.agent=Anna&group_by=channel")
    colon = await api.get("/api/v1/metrics?survey=nps&context=agent:Anna&group_by=channel")
    assert colon == dotted
    status, body = colon
    assert (status, body["overall"]["answers"]) == (200, 2)  # Boris's and desk:7's are out
    # The key ends at the first colon: the value may hold more.
    status, body = await api.get("/api/v1/metrics?survey=nps&context=agent:desk:7")
    assert (status, body["overall"]["answers"], body["overall"]["nps"]["detractors"]) == (
        200, 1, 1)


@pytest.mark.parametrize(("query", "status", "field"), [
    ("", 422, "survey"),
    ("survey=nps&from=2026-13-01", 422, "from"),
    ("survey=nps&to=yesterday", 422, "to"),
    ("survey=nps&from=2026-03-02&to=2026-03-01", 422, "to"),
    ("survey=nps&group_by=year", 422, "group_by"),
    ("survey=nps&group_by=context.", 422, "group_by"),
    ("survey=nps&context.agent=Anna&group_by=context.shop", 422, "group_by"),
    ("survey=nps&context.agent=Anna&context.shop=5", 400, "context.shop"),
    ("survey=nps&context.agent=" + "x" * 201, 422, "context.agent"),
    ("survey=nps&context.agent=", 422, "context.agent"),
    ("survey=nps&context=agent", 422, "context"),
    ("survey=nps&context=:Anna", 422, "context"),
    ("survey=nps&context=agent:", 422, "context"),
    ("survey=nps&context=agent:" + "x" * 201, 422, "context"),
    ("survey=nps&context=agent:Anna&group_by=context.shop", 422, "group_by"),
    ("survey=nps&context=agent:Anna&context=shop:5", 400, "context"),
    ("survey=nps&context=agent:Anna&context=agent:Anna", 400, "context"),
    ("survey=nps&context.agent=Anna&context=shop:5", 400, "context"),
    ("survey=nps&context=shop:5&context.agent=Anna", 400, "context.agent"),
    ("survey=nps&period=Q1", 400, "period"),
    ("survey=nps&channel=web&channel=email", 400, "channel"),
    ("survey=nope", 404, "survey"),
])
async def test_bad_filters_name_the_parameter(api: Api, query: str, status: int,
                                              field: str) -> None:
    got, body = await api.get(f"/api/v1/metrics?{query}")
    assert got == status
    assert body["error"]["field"] == field
    assert body["error"]["message"]


async def test_the_route_is_in_the_openapi_document(api: Api) -> None:
    status, document = await api.get("/openapi.json", token=None)
    assert status == 200
    validate(document)
    operation = document["paths"]["/api/v1/metrics"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "survey", "from", "to", "channel", "segment", "respondent", "group_by", "context"}
    # A list sent as repeated context=KEY:VALUE, the form a generated client can send.
    [context] = [p for p in operation["parameters"] if p["name"] == "context"]
    assert (context["style"], context["explode"], context["schema"]["type"]) == (
        "form", True, "array")
    [respondent] = [p for p in operation["parameters"] if p["name"] == "respondent"]
    assert respondent["schema"]["enum"] == ["known", "anonymous"]
    assert {"200", "400", "401", "404", "422"} <= set(operation["responses"])
    schema = document["components"]["schemas"]["MetricsResult"]
    assert {"overall", "groups", "response_rate", "completion_rate", "drop_off"} <= set(
        schema["properties"])
