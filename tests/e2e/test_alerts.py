"""The alerts API on a real loopback server and database (SQLite and PostgreSQL): the queue
and its filters, one alert with its conversation, take / note / reply / resolve with their
audit rows and the alert.resolved outbox event; a reply reaches a Telegram customer through
the Bot API stand-in and an e-mail customer through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import select, update

from bot.bootstrap import build_web_app
from bot.services.alerts import AlertService
from bot.services.surveys import Who
from conversations.engine import Reply
from handlers.email.channel import Smtp
from handlers.email.replies import EmailReplier
from storage.models import AlertRow, AuditRow, IdentityRow, OutboxRow
from testkit.botapi import BotApiStub
from tests.e2e.telegram_support import Product
from tests.e2e.test_email import SCORE_LINK, by_email, parts, send_score, world
from tests.e2e.trigger_support import ADMIN, Api, serving, trigger

API_TOKEN = "api-token-for-triggers-only"  # posts triggers; not an admin
CHAT = 4242  # the customer's Telegram chat (trigger(): telegram_id 4242, crm-42)
JSON = dict[str, Any]


@dataclass
class Loop:
    api: Api
    stub: BotApiStub
    customer: Product

    async def low_score(self, chat: int = CHAT, key: str = "call-1") -> int:
        """A support call, the customer rates it 1 in Telegram: returns the alert's id."""
        body = trigger(key)
        body["customer"] |= {"telegram_id": chat, "external_id": f"crm-{chat}"}
        body |= {"channel": "telegram", "delay": "PT0S"}
        status, _ = await self.api.post("/api/v1/triggers", body)
        assert status == 202
        await self.customer.send(chat, "/start", language_code="en")
        await self.customer.tap(chat, "1")
        async with self.api.services.factory() as session:
            return int(await session.scalar(select(AlertRow.id).order_by(
                AlertRow.id.desc()).limit(1)) or 0)

    async def audit(self) -> list[tuple[str, str, str, JSON]]:
        async with self.api.services.factory() as session:
            rows = await session.scalars(select(AuditRow).order_by(AuditRow.id))
            return [(r.actor, r.action, r.target, r.details) for r in rows
                    if r.action.startswith("alert.")]


@asynccontextmanager
async def loop(db_url: str, **overrides: Any) -> AsyncIterator[Loop]:
    async with BotApiStub() as stub, serving(
            db_url, telegram=True, telegram_api_base=stub.base_url,
            default_survey="post_call_csat", outbound_webhook_url="http://127.0.0.1:9/hooks",
            api_tokens=[SecretStr(API_TOKEN)], **overrides) as api:
        assert api.product is not None
        yield Loop(api, stub, Product(stub, api.product))


@pytest.fixture
async def lp(db_url: str) -> AsyncIterator[Loop]:
    async with loop(db_url) as started:
        yield started


ROUTES = [("get", "/api/v1/alerts", None), ("get", "/api/v1/alerts/{id}", None),
          ("post", "/api/v1/alerts/{id}/reply", {"text": "Hi"}),
          ("post", "/api/v1/alerts/{id}/take", {}),
          ("post", "/api/v1/alerts/{id}/notes", {"text": "Called back"}),
          ("post", "/api/v1/alerts/{id}/resolve", {})]


async def call(api: Api, method: str, path: str, body: Any, token: str | None
               ) -> tuple[int, JSON]:
    if method == "get":
        return await api.get(path, token=token)
    return await api.post(path, body, token=token)


async def test_every_route_wants_the_admin_token(lp: Loop) -> None:
    alert_id = await lp.low_score()
    for method, path, body in ROUTES:
        url = path.format(id=alert_id)
        for token, refused in ((None, 401), ("wrong", 401), (API_TOKEN, 403)):
            status, error = await call(lp.api, method, url, body, token)
            assert (status, error["error"]["field"]) == (refused, "Authorization"), (url, token)
        status, _ = await call(lp.api, method, url, body, ADMIN)
        assert status == 200, url
    # Only the admin token acted, once per change.
    assert [action for _, action, _, _ in await lp.audit()] == [
        "alert.reply", "alert.take", "alert.note", "alert.resolve"]


async def test_the_queue_filters_and_pages_newest_first(lp: Loop) -> None:
    first = await lp.low_score(CHAT, "call-1")
    second = await lp.low_score(CHAT + 1, "call-2")
    await lp.api.post(f"/api/v1/alerts/{first}/take", {"owner": "maria"})

    status, page = await lp.api.get("/api/v1/alerts")
    assert status == 200
    assert [a["id"] for a in page["alerts"]] == [second, first]
    assert page["next_cursor"] is None
    newest = page["alerts"][0]
    assert (newest["status"], newest["survey"], newest["step"], newest["metric"],
            newest["score"], newest["channel"]) == (
        "open", "post_call_csat", "csat", "csat", 1, "telegram")
    assert newest["customer"]["external_id"] == f"crm-{CHAT + 1}"

    async def ids(query: str) -> list[int]:
        status, body = await lp.api.get(f"/api/v1/alerts?{query}")
        assert status == 200, body
        return [a["id"] for a in body["alerts"]]

    assert await ids("status=open") == [second]
    assert await ids("status=in_progress&owner=maria") == [first]
    assert await ids("owner=nobody") == []
    assert await ids("survey=post_call_csat") == [second, first]
    assert await ids("survey=nps") == []
    assert await ids("overdue=false") == [second, first]
    assert await ids("overdue=true") == []

    _, one = await lp.api.get("/api/v1/alerts?limit=1")
    assert [a["id"] for a in one["alerts"]] == [second]
    assert one["next_cursor"] == str(second)
    _, rest = await lp.api.get(f"/api/v1/alerts?limit=1&cursor={one['next_cursor']}")
    assert [a["id"] for a in rest["alerts"]] == [first]

    for query, field in (("status=done", "status"), ("overdue=maybe", "overdue"),
                         ("cursor=abc", "cursor"), ("limit=0", "limit"),
                         ("limit=201", "limit")):
        status, error = await lp.api.get(f"/api/v1/alerts?{query}")
        assert (status, error["error"]["field"]) == (422, field), query


async def test_one_alert_with_its_conversation(lp: Loop) -> None:
    alert_id = await lp.low_score()
    await lp.customer.tap(CHAT, "⬜ Long wait")
    await lp.customer.tap(CHAT, "✅ Done")
    await lp.customer.send(CHAT, "Waited 40 minutes")

    status, alert = await lp.api.get(f"/api/v1/alerts/{alert_id}")

    assert status == 200
    assert alert["customer"]["external_id"] == f"crm-{CHAT}"
    assert alert["context"] == {"agent_name": "Anna", "call_type": "support"}
    assert [(a["step"], a["score"], a["choices"], a["text"]) for a in alert["answers"]] == [
        ("csat", 1, [], None), ("what_went_wrong", None, ["waiting"], None),
        ("details", None, [], "Waited 40 minutes")]
    assert alert["notes"] == []


async def test_reply_reaches_the_telegram_customer_and_is_recorded(lp: Loop) -> None:
    alert_id = await lp.low_score()
    before = len(lp.stub.sent(CHAT))

    status, body = await lp.api.post(f"/api/v1/alerts/{alert_id}/reply",
                                      {"text": "Sorry! <b>We</b> will call you & fix it."})

    assert status == 200, body
    assert body["channel"] == "telegram"
    assert len(lp.stub.sent(CHAT)) == before + 1
    assert lp.stub.messages(CHAT)[-1]["text"] == "Sorry! <b>We</b> will call you & fix it."
    alert = body["alert"]
    assert (alert["status"], alert["owner"]) == ("in_progress", "admin")
    [note] = alert["notes"]
    assert (note["kind"], note["author"], note["channel"], note["text"]) == (
        "reply", "admin", "telegram", "Sorry! <b>We</b> will call you & fix it.")
    assert await lp.audit() == [("admin", "alert.reply", f"alert:{alert_id}",
                                 {"channel": "telegram"})]


async def test_take_note_resolve_and_the_outbox_event(lp: Loop) -> None:
    alert_id = await lp.low_score()

    status, taken = await lp.api.post(f"/api/v1/alerts/{alert_id}/take", {"owner": "maria"})
    assert status == 200
    assert (taken["status"], taken["owner"]) == ("in_progress", "maria")
    status, noted = await lp.api.post(f"/api/v1/alerts/{alert_id}/notes",
                                      {"text": "Called, no answer"})
    assert status == 200
    assert [(n["kind"], n["author"], n["text"]) for n in noted["notes"]] == [
        ("note", "admin", "Called, no answer")]

    status, resolved = await lp.api.post(f"/api/v1/alerts/{alert_id}/resolve",
                                         {"note": "Refunded"})
    assert status == 200
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] is not None
    assert [n["text"] for n in resolved["notes"]] == ["Called, no answer", "Refunded"]

    async with lp.api.services.factory() as session:
        events = list(await session.scalars(
            select(OutboxRow).where(OutboxRow.event == "alert.resolved")))
    [event] = events
    assert event.key == f"customer:{taken['customer']['id']}"
    assert {k: v for k, v in event.payload.items() if k != "at"} == {
        "alert_id": alert_id, "survey": "post_call_csat", "step": "csat", "score": 1,
        "customer": f"crm-{CHAT}", "resolved_by": "admin"}
    assert event.payload["at"] == resolved["resolved_at"].replace("Z", "+00:00")
    assert [(a, t, d) for _, a, t, d in await lp.audit()] == [
        ("alert.take", f"alert:{alert_id}", {"before": {"status": "open", "owner": None},
                                             "after": {"status": "in_progress",
                                                       "owner": "maria"}}),
        ("alert.note", f"alert:{alert_id}", {}),
        ("alert.resolve", f"alert:{alert_id}", {"before": "in_progress", "note": True})]

    # Resolved: no more replies, taking or resolving; notes still.
    sent = len(lp.stub.sent(CHAT))
    for action, body in (("reply", {"text": "Hi"}), ("take", {}), ("resolve", {})):
        status, error = await lp.api.post(f"/api/v1/alerts/{alert_id}/{action}", body)
        assert (status, error["error"]["code"]) == (409, "resolved"), action
    assert len(lp.stub.sent(CHAT)) == sent
    status, _ = await lp.api.post(f"/api/v1/alerts/{alert_id}/notes", {"text": "Follow-up"})
    assert status == 200
    async with lp.api.services.factory() as session:
        assert len(list(await session.scalars(select(OutboxRow.id).where(
            OutboxRow.event == "alert.resolved")))) == 1


async def test_unknown_ids_and_bad_bodies(lp: Loop) -> None:
    alert_id = await lp.low_score()
    sent = len(lp.stub.sent(CHAT))
    for method, path, body in ROUTES[1:]:
        for bad in ("999", "abc"):
            status, error = await call(lp.api, method, path.format(id=bad), body, ADMIN)
            assert (status, error["error"]["code"]) == (404, "not_found"), (path, bad)

    url = f"/api/v1/alerts/{alert_id}"
    bad_bodies: list[tuple[str, JSON, str]] = [
            ("reply", {}, "text"), ("reply", {"text": ""}, "text"),
            ("reply", {"text": "   "}, "text"), ("reply", {"text": "x" * 4001}, "text"),
            ("reply", {"text": "Hi", "cc": "boss"}, "cc"), ("notes", {"text": 5}, "text"),
            ("resolve", {"note": "x" * 4001}, "note"), ("take", {"owner": ""}, "owner")]
    for path, bad_body, field in bad_bodies:
        status, error = await lp.api.post(f"{url}/{path}", bad_body)
        assert (status, error["error"]["field"]) == (422, field), (path, bad_body)
    status, error = await lp.api.post(f"{url}/reply", ["Hi"])
    assert status == 422
    assert await lp.audit() == []  # nothing was done
    assert len(lp.stub.sent(CHAT)) == sent


async def test_a_reply_with_nothing_to_send_with_names_the_reason(lp: Loop) -> None:
    alert_id = await lp.low_score()
    for repliers in (None, {"email": EmailReplier(Smtp("127.0.0.1", 9, None, None, False),
                                                  "team@example.com")}):
        # The same database, served by a process with no bot to reply as.
        services = dataclasses.replace(lp.api.services, alerts=AlertService(
            lp.api.services.db, repliers=repliers))
        async with TestClient(TestServer(build_web_app(
                lp.api.settings, lp.api.engine, services))) as client:
            response = await client.post(f"/api/v1/alerts/{alert_id}/reply",
                                         json={"text": "Hi"},
                                         headers={"Authorization": f"Bearer {ADMIN}"})
            error = await response.json()
        assert (response.status, error["error"]["code"]) == (503, "channel_not_configured")
        assert "cannot reply by telegram" in error["error"]["message"]

    # A web visitor without an e-mail address: no channel reaches them.
    surveys = lp.api.services.surveys
    visitor = Who("web", "visitor-1")
    await surveys.begin(visitor, "nps")
    await surveys.reply(visitor, Reply.typed("2"))
    _, page = await lp.api.get("/api/v1/alerts?survey=nps")
    [web_alert] = page["alerts"]
    assert web_alert["channel"] == "web"
    status, error = await lp.api.post(f"/api/v1/alerts/{web_alert['id']}/reply", {"text": "Hi"})
    assert (status, error["error"]["code"]) == (409, "unreachable")
    assert "no channel reaches this customer" in error["error"]["message"]
    assert await lp.audit() == []


async def test_the_alert_routes_are_in_the_openapi_document(lp: Loop) -> None:
    response = await lp.api.client.get("/openapi.json")
    paths = (await response.json())["paths"]
    assert set(paths["/api/v1/alerts"]) == {"get"}
    for action in ("reply", "resolve", "take", "notes"):
        operation = paths[f"/api/v1/alerts/{{id}}/{action}"]["post"]
        assert {"200", "401", "404", "422"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
    assert "409" in paths["/api/v1/alerts/{id}/reply"]["post"]["responses"]
    assert "404" in paths["/api/v1/alerts/{id}"]["get"]["responses"]


async def test_a_reply_to_an_e_mail_customer_arrives_as_a_reply_e_mail(db_url: str) -> None:
    async with world(db_url, mail_from="Otklik <team@example.com>") as w:
        await w.api.post("/api/v1/triggers", by_email())
        await w.dispatcher.tick()
        [invitation] = w.mailbox.messages
        text, _ = parts(invitation)
        three = next(link for link in SCORE_LINK.findall(text) if link.endswith("/3"))
        response = await send_score(w.api.client.session,
                                    str(w.api.client.make_url(w.path(three))))
        assert response.status == 200
        _, page = await w.api.get("/api/v1/alerts")
        [alert] = page["alerts"]
        assert (alert["score"], alert["channel"]) == (3, "email")

        status, body = await w.api.post(f"/api/v1/alerts/{alert['id']}/reply",
                                        {"text": "Thank you, Anna. What went wrong?"})

        assert status == 200, body
        assert body["channel"] == "email"
        [_, reply] = w.mailbox.messages
        assert w.mailbox.recipients[-1] == "anna@example.com"
        assert reply["Subject"] == "Re: Net Promoter Score"
        assert reply["From"] == "Otklik <team@example.com>"
        assert reply["In-Reply-To"] == invitation["Message-ID"]  # threads under the survey
        assert reply.get_content().strip() == "Thank you, Anna. What went wrong?"

        # Their address bounced since: nothing reaches them, and nothing is recorded.
        async with w.api.services.factory() as session:
            await session.execute(update(IdentityRow).where(
                IdentityRow.channel == "email").values(reachable=False))
            await session.commit()
        status, error = await w.api.post(f"/api/v1/alerts/{alert['id']}/reply",
                                         {"text": "Hello?"})
        assert (status, error["error"]["code"]) == (409, "unreachable")
        assert len(w.mailbox.messages) == 2
        _, detail = await w.api.get(f"/api/v1/alerts/{alert['id']}")
        assert len(detail["notes"]) == 1
