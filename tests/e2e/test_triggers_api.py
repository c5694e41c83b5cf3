"""POST /api/v1/triggers over real HTTP on loopback, on SQLite and PostgreSQL: recorded
once per idempotency key, authenticated, refused with a JSON error naming the field, and
the policy's decision stored and readable through the API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate
from sqlalchemy import select, update

from handlers.api.core import signature
from storage.models import CustomerRow, IdentityRow
from tests.e2e.trigger_support import NOON, Api, serving, trigger


@pytest.fixture
async def api(db_url: str) -> Any:
    async with serving(db_url) as api:
        yield api


async def test_a_trigger_schedules_a_delivery_after_the_scripts_delay(api: Api) -> None:
    status, body = await api.post("/api/v1/triggers", trigger())
    assert status == 202
    assert body["status"] == "scheduled"
    assert body["reason"] is None
    assert datetime.fromisoformat(body["due_at"]) == NOON + timedelta(minutes=15)
    [delivery] = await api.deliveries()
    assert (delivery.id, delivery.survey_id, delivery.channel, delivery.status) == (
        body["delivery_id"], "post_call_csat", "telegram", "scheduled")
    assert delivery.context == {"agent_name": "Anna", "call_type": "support"}
    assert delivery.token is not None
    assert len(delivery.token) >= 22
    status, shown = await api.get(f"/api/v1/deliveries/{body['delivery_id']}")
    assert status == 200
    assert (shown["status"], shown["survey"], shown["trigger_id"]) == (
        "scheduled", "post_call_csat", body["trigger_id"])


async def test_the_delay_of_the_request_wins_over_the_scripts(api: Api) -> None:
    status, body = await api.post("/api/v1/triggers", {**trigger(), "delay": "PT2H"})
    assert status == 202
    assert datetime.fromisoformat(body["due_at"]) == NOON + timedelta(hours=2)


async def test_the_same_key_again_returns_the_first_answer_and_stores_nothing(
        api: Api) -> None:
    first_status, first = await api.post("/api/v1/triggers", trigger())
    api.clock.advance(minutes=5)
    again_status, again = await api.post("/api/v1/triggers", trigger())
    assert (first_status, again_status) == (202, 200)
    assert again == first
    assert len(await api.deliveries()) == 1
    assert await api.trigger_count() == 1


async def test_the_same_key_with_another_body_is_a_conflict(api: Api) -> None:
    await api.post("/api/v1/triggers", trigger())
    status, body = await api.post("/api/v1/triggers", {**trigger(), "context": {"x": 1}})
    assert status == 409
    assert body["error"]["field"] == "idempotency_key"
    assert len(await api.deliveries()) == 1


async def test_concurrent_identical_posts_create_one_delivery(api: Api) -> None:
    results = await asyncio.gather(*(api.post("/api/v1/triggers", trigger())
                                     for _ in range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 7 + [202]
    assert len({body["delivery_id"] for _, body in results}) == 1
    assert len(await api.deliveries()) == 1


async def test_a_signed_request_is_accepted(api: Api) -> None:
    status, body = await api.signed("/api/v1/triggers", trigger())
    assert status == 202, body


@pytest.mark.parametrize(("how", "field", "code"), [
    ("no auth", "Authorization", "unauthorized"),
    ("wrong token", "Authorization", "unauthorized"),
    ("wrong secret", "X-Otklik-Signature", "bad_signature"),
    ("old timestamp", "X-Otklik-Timestamp", "stale_signature"),
    ("future timestamp", "X-Otklik-Timestamp", "stale_signature"),
])
async def test_unauthenticated_triggers_are_refused_and_nothing_is_stored(
        api: Api, how: str, field: str, code: str) -> None:
    body = trigger()
    if how == "no auth":
        status, answer = await api.post("/api/v1/triggers", body, token=None)
    elif how == "wrong token":
        status, answer = await api.post("/api/v1/triggers", body, token="admin-token-for-test")
    elif how == "wrong secret":
        status, answer = await api.signed("/api/v1/triggers", body, secret="guess")
    else:
        skew = -400 if how == "old timestamp" else 400
        status, answer = await api.signed("/api/v1/triggers", body, at=time.time() + skew)
    assert status == 401
    assert answer["error"]["field"] == field
    assert answer["error"]["code"] == code
    assert await api.deliveries() == []
    assert await api.trigger_count() == 0


async def test_a_body_signed_for_another_body_is_refused(api: Api) -> None:
    stamp = str(int(time.time()))
    sig = signature(b"trigger-secret-for-tests", stamp, b'{"survey": "nps"}')
    response = await api.client.post("/api/v1/triggers", json=trigger(), headers={
        "X-Otklik-Timestamp": stamp, "X-Otklik-Signature": sig})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "bad_signature"


@pytest.mark.parametrize(("change", "field"), [
    ({"survey": "no_such_survey"}, "survey"),
    ({"idempotency_key": None}, "idempotency_key"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"customer": {"telegram_id": 1}}, "customer.external_id"),
    ({"customer": {"external_id": "x", "phone": "12345"}}, "customer.phone"),
    ({"customer": {"external_id": "x", "email": "not-an-address"}}, "customer.email"),
    ({"customer": {"external_id": "x", "timezone": "Mars/Olympus"}}, "customer.timezone"),
    ({"customer": {"external_id": "x", "telegram_id": -5}}, "customer.telegram_id"),
    ({"delay": "soon"}, "delay"),
    ({"delay": "P400D"}, "delay"),
    ({"channel": "pigeon"}, "channel"),
    ({"surprise": True}, "surprise"),
])
async def test_invalid_triggers_name_the_field_and_store_nothing(
        api: Api, change: dict[str, Any], field: str) -> None:
    body = {**trigger(), **change}
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = await api.post("/api/v1/triggers", body)
    assert status == 422, answer
    assert answer["error"]["field"] == field
    assert field.split(".")[-1] in answer["error"]["message"]
    assert await api.deliveries() == []
    assert await api.trigger_count() == 0


async def test_bad_json_and_wrong_content_type_are_refused(api: Api) -> None:
    headers = {"Authorization": "Bearer admin-token-for-tests"}
    response = await api.client.post("/api/v1/triggers", data=b"{not json", headers={
        **headers, "Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "body"
    response = await api.client.post("/api/v1/triggers", data=b"survey=nps", headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 415
    assert (await response.json())["error"]["field"] == "Content-Type"
    response = await api.client.post("/api/v1/triggers", data=b"[1, 2]", headers={
        **headers, "Content-Type": "application/json"})
    assert response.status == 422
    response = await api.client.post("/api/v1/triggers", data=b"x" * 300_000, headers={
        **headers, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"
    assert await api.trigger_count() == 0


async def test_the_customer_is_upserted_by_external_id_with_identities(api: Api) -> None:
    await api.post("/api/v1/triggers", trigger(
        "a", email="Anna@Example.COM", phone="+7 (912) 345-67-89", first_name="Anna",
        timezone="Asia/Yekaterinburg", attributes={"segment": "vip", "city": "Perm"}))
    await api.post("/api/v1/triggers", trigger("b", survey="nps",
                                               attributes={"segment": "gold"}))
    async with api.services.factory() as session:
        [customer] = list(await session.scalars(select(CustomerRow)))
        identities = {(i.channel, i.address) for i in await session.scalars(
            select(IdentityRow))}
    assert customer.external_id == "crm-42"
    assert (customer.phone, customer.email, customer.timezone) == (
        "+79123456789", "anna@example.com", "Asia/Yekaterinburg")
    assert customer.attributes == {"segment": "gold", "city": "Perm"}
    # A phone number is the customer's WhatsApp address too: its digits, as Meta's wa_id.
    assert identities == {("telegram", "4242"), ("email", "anna@example.com"),
                          ("phone", "+79123456789"), ("whatsapp", "79123456789"),
                          ("sms", "+79123456789")}


async def test_an_opted_out_customer_is_suppressed_with_the_reason(api: Api) -> None:
    await api.post("/api/v1/triggers", trigger("first", survey="nps"))
    async with api.services.factory() as session:
        await session.execute(update(CustomerRow).values(opted_out_at=NOON))
        await session.commit()
    status, body = await api.post("/api/v1/triggers", trigger("second"))
    assert (status, body["status"], body["reason"]) == (202, "suppressed", "opted_out")
    status, page = await api.get("/api/v1/deliveries?customer=crm-42&status=suppressed")
    assert [d["reason"] for d in page["deliveries"]] == ["opted_out"]


async def test_throttle_per_survey_and_across_surveys(api: Api) -> None:
    _, first = await api.post("/api/v1/triggers", trigger("1"))
    api.clock.advance(days=29)
    _, again = await api.post("/api/v1/triggers", trigger("2"))
    _, other = await api.post("/api/v1/triggers", trigger("3", survey="nps"))
    api.clock.advance(days=2)
    _, later = await api.post("/api/v1/triggers", trigger("4"))
    assert first["status"] == "scheduled"
    assert (again["status"], again["reason"]) == ("suppressed", "throttled")
    assert other["status"] == "scheduled"  # post_call_csat throttles per survey
    assert later["status"] == "scheduled"  # 31 days after the first
    # cli_quarterly's throttle is across all surveys: the nps above counts.
    _, cli = await api.post("/api/v1/triggers", trigger("5", survey="cli_quarterly"))
    assert (cli["status"], cli["reason"]) == ("suppressed", "throttled")


async def test_a_global_throttle_counts_every_survey(db_url: str) -> None:
    async with serving(db_url, throttle_days=7) as api:
        await api.post("/api/v1/triggers", trigger("1", survey="nps"))
        api.clock.advance(days=6)
        _, body = await api.post("/api/v1/triggers", trigger("2", survey="ces_support"))
        assert (body["status"], body["reason"]) == ("suppressed", "throttled")


async def test_quiet_hours_move_the_delivery_to_the_next_allowed_time(db_url: str) -> None:
    # 20:00 UTC is 23:00 in Moscow: post_call_csat's quiet hours run 22:00-09:00 there.
    async with serving(db_url, now=datetime(2026, 3, 2, 20, 0, tzinfo=UTC)) as api:
        _, body = await api.post("/api/v1/triggers", trigger(timezone="Europe/Moscow"))
        assert (body["status"], body["reason"]) == ("scheduled", "quiet_hours")
        assert datetime.fromisoformat(body["due_at"]) == datetime(2026, 3, 3, 6, 0,
                                                                  tzinfo=UTC)
        # The same hour in Vladivostok (07:00 there) is also quiet, until 09:00 (23:00 UTC).
        _, east = await api.post("/api/v1/triggers", trigger(
            "2", external_id="east", telegram_id=7, timezone="Asia/Vladivostok"))
        assert datetime.fromisoformat(east["due_at"]) == datetime(2026, 3, 2, 23, 0,
                                                                  tzinfo=UTC)


async def test_a_customer_with_no_reachable_channel_is_suppressed(api: Api) -> None:
    status, body = await api.post("/api/v1/triggers", {
        "survey": "nps", "idempotency_key": "k", "customer": {"external_id": "phone-only",
                                                              "phone": "+14155550123"}})
    assert (status, body["status"], body["reason"]) == (202, "suppressed", "no_channel")
    # nothing sends e-mail yet: an e-mail address alone reaches nobody either
    _, mail = await api.post("/api/v1/triggers", {
        "survey": "nps", "idempotency_key": "k2", "channel": "email",
        "customer": {"external_id": "mail-only", "email": "a@example.com"}})
    assert (mail["status"], mail["reason"]) == ("suppressed", "no_channel")


async def test_surveys_list_the_active_scripts(api: Api) -> None:
    status, body = await api.get("/api/v1/surveys")
    assert status == 200
    by_id = {s["id"]: s for s in body["surveys"]}
    assert set(by_id) == {"nps", "post_call_csat", "ces_support", "cli_quarterly"}
    assert by_id["nps"]["version"] == 1
    assert by_id["nps"]["step_types"][0] == "nps"
    assert (await api.get("/api/v1/surveys", token=None))[0] == 401


async def test_deliveries_page_with_a_cursor(api: Api) -> None:
    for n in range(5):
        await api.post("/api/v1/triggers", trigger(f"k{n}", external_id=f"c{n}",
                                                   telegram_id=100 + n))
    _, first = await api.get("/api/v1/deliveries?limit=2")
    _, second = await api.get(f"/api/v1/deliveries?limit=2&cursor={first['next_cursor']}")
    _, last = await api.get(f"/api/v1/deliveries?limit=2&cursor={second['next_cursor']}")
    ids = [d["id"] for page in (first, second, last) for d in page["deliveries"]]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert last["next_cursor"] is None
    assert (await api.get("/api/v1/deliveries?limit=0"))[1]["error"]["field"] == "limit"
    assert (await api.get("/api/v1/deliveries/999"))[0] == 404


async def test_the_openapi_document_is_valid_and_describes_the_routes(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    document = await response.json()
    validate(document)
    paths = document["paths"]
    assert {"/healthz", "/api/v1/triggers", "/api/v1/surveys", "/api/v1/deliveries",
            "/api/v1/campaigns"} <= set(paths)
    trigger_op = paths["/api/v1/triggers"]["post"]
    schema = trigger_op["requestBody"]["content"]["application/json"]["schema"]
    body = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(body["required"]) == {"survey", "idempotency_key", "customer"}
    assert {"202", "200", "401", "409", "422"} <= set(trigger_op["responses"])
    assert {"bearer", "signature"} == set(document["components"]["securitySchemes"])


async def test_unknown_api_routes_answer_json(api: Api) -> None:
    status, body = await api.get("/api/v1/nothing-here")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    response = await api.client.delete("/api/v1/triggers")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_health(api: Api) -> None:
    status, body = await api.get("/healthz", token=None)
    assert (status, body) == (200, {"status": "ok", "database": "ok"})


async def test_due_times_are_utc(api: Api) -> None:
    _, body = await api.post("/api/v1/triggers", trigger())
    assert datetime.fromisoformat(body["due_at"]).utcoffset() == timedelta(0)


async def test_a_scheduled_delivery_comes_with_its_surveys_link(api: Api) -> None:
    """The caller (a help desk, a newcomer without Telegram) can hand the survey on itself:
    the 202 names the delivery's page, which opens the survey; the same on a replay; a
    suppressed delivery has none."""
    status, body = await api.post("/api/v1/triggers", trigger())
    assert status == 202
    [delivery] = await api.deliveries()
    assert body["survey_url"] == f"{api.services.links.base_url}/s/{delivery.token}"
    page = await api.client.get(f"/s/{delivery.token}")
    assert page.status == 200
    assert "How would you rate your call with Anna?" in await page.text()
    again_status, again = await api.post("/api/v1/triggers", trigger())
    assert (again_status, again["survey_url"]) == (200, body["survey_url"])
    # The same customer again within the throttle: suppressed, no survey to open.
    status, suppressed = await api.post("/api/v1/triggers", trigger(key="call-2"))
    assert (status, suppressed["status"], suppressed["survey_url"]) == (202, "suppressed", None)
    assert "token" not in body  # only the link, as the API documents it
