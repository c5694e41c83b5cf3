"""Customer lookup, export and erasure over real HTTP on loopback, on SQLite and PostgreSQL:
erasure removes every trace of the person from the whole database and keeps the anonymous
scores, so the rollups stay what they were and still add up from the raw answers."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.services.surveys import Who
from conversations.engine import Reply
from storage.models import (
    AlertRow,
    AnswerRow,
    Base,
    CustomerRow,
    DeliveryRow,
    IdentityRow,
    OutboxRow,
    RollupRow,
)
from storage.rollups import buckets, rollup_day
from tests.e2e.admin_support import answer_nps
from tests.e2e.trigger_support import NOON, Api, serving

EMAIL, PHONE, NAME = "anna.petrova@example.com", "+14155550123", "Анна"
TEXT = "Оператор Иван нагрубил, перезвоните мне на +14155550123"
NOTE = "Позвонили Анне Петровой, извинились"


@pytest.fixture
async def api(db_url: str) -> Any:
    async with serving(db_url) as api:
        yield api


async def dump(api: Api) -> str:
    """Every row of every table, as text: what a leaked backup would show."""
    rows: list[str] = []
    async with api.services.factory() as session:
        for table in Base.metadata.sorted_tables:
            rows += map(str, (await session.execute(select(table))).all())
    return "\n".join(rows)


async def rollups(api: Api) -> Counter[tuple[Any, ...]]:
    async with api.services.factory() as session:
        rows = (await session.scalars(select(RollupRow))).all()
    return Counter({(r.survey_id, r.step_id, r.day, r.channel, r.segment, r.bucket): r.count
                    for r in rows if r.count})


async def recount(api: Api) -> Counter[tuple[Any, ...]]:
    """The rollups computed again from the raw answers (the NPS survey counts in UTC)."""
    async with api.services.factory() as session:
        answers = (await session.scalars(select(AnswerRow))).all()
    counted: Counter[tuple[Any, ...]] = Counter()
    for a in answers:
        for bucket in buckets(a.score, a.choices):
            counted[(a.survey_id, a.step_id, rollup_day(a.answered_at, "UTC"), a.channel,
                     a.segment, bucket)] += 1
    return counted


async def person(api: Api) -> int:
    """crm-1 with contact details, a detractor's score and text, an alert with a note, a
    webhook event still queued, and a survey scheduled but not yet sent."""
    await answer_nps(api, 1, 3, TEXT, email=EMAIL, phone=PHONE, first_name=NAME,
                     attributes={"segment": "vip", "city": "Тверь"})
    async with api.services.factory() as session:
        customer_id = await session.scalar(
            select(CustomerRow.id).where(CustomerRow.external_id == "crm-1"))
        assert customer_id is not None
        await session.execute(update(AlertRow).where(AlertRow.customer_id == customer_id)
                              .values(notes=[{"by": "lead", "text": NOTE}]))
        session.add(OutboxRow(event="answer.created", key=f"customer:{customer_id}",
                              payload={"text": TEXT, "email": EMAIL}, created_at=NOON,
                              due_at=NOON))
        await session.commit()
    status, later = await api.post("/api/v1/triggers", {
        "survey": "post_call_csat", "idempotency_key": "call-later", "channel": "telegram",
        "customer": {"external_id": "crm-1", "telegram_id": 1001, "email": EMAIL},
        "context": {"agent_name": "Ivan"}})
    assert (status, later["status"]) == (202, "scheduled")
    return customer_id


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/customers?q=crm-1"), ("GET", "/api/v1/customers/crm-1/export"),
    ("DELETE", "/api/v1/customers/crm-1")])
async def test_auth(api: Api, method: str, path: str) -> None:
    await answer_nps(api, 1, 9, email=EMAIL)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = await api.client.request(method, path, headers=headers)
        assert response.status == 401
        assert (await response.json())["error"]["field"] == "Authorization"
    async with api.services.factory() as session:
        customer = await session.scalar(
            select(CustomerRow).where(CustomerRow.external_id == "crm-1"))
    assert customer is not None
    assert (customer.email, customer.erased_at) == (EMAIL, None)  # nothing was erased
    response = await api.client.request(
        method, path, headers={"Authorization": "Bearer admin-token-for-tests"})
    assert response.status == 200


async def test_lookup_by_external_id_email_phone_or_address(api: Api) -> None:
    await answer_nps(api, 1, 9, email=EMAIL, phone=PHONE, first_name=NAME)
    await answer_nps(api, 2, 7, email="other@example.com")
    for q in ("crm-1", EMAIL.upper(), "+1 415-555-0123", "1001"):
        status, body = await api.get(f"/api/v1/customers?q={q.replace('+', '%2B')}")
        assert status == 200
        assert [c["external_id"] for c in body["customers"]] == ["crm-1"], q
    assert body["customers"][0]["email"] == EMAIL
    _, none = await api.get("/api/v1/customers?q=nobody")
    assert none["customers"] == []
    for query in ("", "?q=", "?q=%20"):
        status, body = await api.get(f"/api/v1/customers{query}")
        assert (status, body["error"]["field"]) == (422, "q")


async def test_export_has_everything_stored_about_the_customer(api: Api) -> None:
    await person(api)
    await answer_nps(api, 2, 10, "someone else")
    status, data = await api.get("/api/v1/customers/crm-1/export")
    assert status == 200
    customer = data["customer"]
    assert (customer["external_id"], customer["email"], customer["phone"],
            customer["first_name"], customer["attributes"]) == (
        "crm-1", EMAIL, PHONE, NAME, {"segment": "vip", "city": "Тверь"})
    assert {(i["channel"], i["address"]) for i in data["identities"]} >= {
        ("telegram", "1001"), ("email", EMAIL)}
    assert {d["survey_id"] for d in data["deliveries"]} == {"nps", "post_call_csat"}
    assert all("token" not in d for d in data["deliveries"])
    assert {t["idempotency_key"] for t in data["triggers"]} == {"nps-1", "call-later"}
    assert [s["survey_id"] for s in data["sessions"]] == ["nps"]
    assert sorted((a["step_id"], a["score"], a["text"]) for a in data["answers"]) == [
        ("reason", None, TEXT), ("score", 3, None)]
    [alert] = data["alerts"]
    assert (alert["score"], alert["notes"]) == (3, [{"by": "lead", "text": NOTE}])
    assert "someone else" not in str(data)
    assert (await api.get("/api/v1/customers/nobody/export"))[1]["error"]["field"] == (
        "external_id")
    _, audit = await api.get("/api/v1/audit?action=customer.exported")
    assert [(e["target"], e["actor"]) for e in audit["items"]] == [("crm-1", "admin")]


async def test_erasure_removes_personal_data_and_keeps_the_rollups_true(api: Api) -> None:
    customer_id = await person(api)
    await answer_nps(api, 2, 10, "Всё отлично, спасибо", email="keep@example.com")
    before = await rollups(api)
    assert before == await recount(api)
    everything = await dump(api)
    for secret in (EMAIL, PHONE, NAME, TEXT, NOTE, "Тверь"):
        assert secret in everything  # the search below can find what is there

    response = await api.client.delete(
        "/api/v1/customers/crm-1", headers={"Authorization": "Bearer admin-token-for-tests"})
    assert response.status == 200
    erased = await response.json()
    assert erased["external_id"] == "crm-1"
    assert erased["answers"] == 2

    everything = await dump(api)
    for secret in (EMAIL, PHONE, NAME, TEXT, NOTE, "Тверь", "anna"):
        assert secret not in everything, secret
    assert "Всё отлично, спасибо" in everything
    assert "keep@example.com" in everything
    assert await rollups(api) == before
    assert await recount(api) == before

    async with api.services.factory() as session:
        customer = await session.get(CustomerRow, customer_id)
        assert customer is not None
        identities = (await session.scalars(
            select(IdentityRow).where(IdentityRow.customer_id == customer_id))).all()
        deliveries = (await session.scalars(
            select(DeliveryRow).where(DeliveryRow.customer_id == customer_id)
            .order_by(DeliveryRow.id))).all()
        scores = (await session.scalars(
            select(AnswerRow.score).where(AnswerRow.customer_id == customer_id,
                                          AnswerRow.step_id == "score"))).all()
    assert customer.erased_at is not None
    assert customer.opted_out_at is not None
    assert identities == []
    assert scores == [3]
    assert [(d.survey_id, d.status, d.reason, d.token, d.context) for d in deliveries] == [
        ("nps", "completed", None, None, {}),
        ("post_call_csat", "suppressed", "erased", None, {})]

    # Again: the same answer, nothing else changes.
    again = await api.client.delete("/api/v1/customers/crm-1",
                                    headers={"Authorization": "Bearer admin-token-for-tests"})
    assert (again.status, await again.json()) == (200, erased)
    assert await rollups(api) == before

    # The CRM fires again: the customer is opted out and nothing personal is stored again.
    status, body = await api.post("/api/v1/triggers", {
        "survey": "nps", "idempotency_key": "after-erasure",
        "customer": {"external_id": "crm-1", "telegram_id": 1001, "email": EMAIL,
                     "first_name": NAME}})
    assert (status, body["status"], body["reason"]) == (202, "suppressed", "opted_out")
    async with api.services.factory() as session:
        customer = await session.get(CustomerRow, customer_id)
        assert customer is not None
        assert (customer.email, customer.first_name) == (None, None)
        assert await session.scalar(select(IdentityRow).where(
            IdentityRow.channel == "telegram", IdentityRow.address == "1001")) is None

    _, audit = await api.get("/api/v1/audit?action=customer.erased&target=crm-1")
    assert [e["details"]["again"] for e in audit["items"]] == [True, False]
    missing = await api.client.delete(
        "/api/v1/customers/nobody", headers={"Authorization": "Bearer admin-token-for-tests"})
    assert missing.status == 404
    assert (await missing.json())["error"]["field"] == "external_id"


async def test_erasure_ends_an_open_dialogue(api: Api) -> None:
    await api.post("/api/v1/triggers", {
        "survey": "nps", "idempotency_key": "open", "channel": "telegram",
        "customer": {"external_id": "crm-7", "telegram_id": 1007, "first_name": NAME}})
    async with api.services.factory() as session:
        token = await session.scalar(select(DeliveryRow.token))
    assert token is not None
    who = Who("telegram", "1007")
    await api.services.surveys.begin(who, token=token)
    await api.services.surveys.reply(who, Reply.typed("4"))  # the "why?" is still open
    response = await api.client.delete("/api/v1/customers/crm-7",
                                       headers={"Authorization": "Bearer admin-token-for-tests"})
    assert response.status == 200
    assert await api.services.surveys.reply(who, Reply.typed(TEXT)) is None
    assert TEXT not in await dump(api)
    assert NAME not in await dump(api)
