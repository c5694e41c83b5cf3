"""The closed loop in the team chat, end to end: real updates through the real aiogram
Dispatcher, the Bot API stand-in on loopback, the real database (SQLite and PostgreSQL).
A low score raises an alert with Reply / Resolve / Open conversation; Resolve resolves it
and says who; an admin's reply (to the prompt, or to the alert itself) reaches the
customer's chat; an alert nobody took within the SLA is re-sent once, overdue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.scheduler import build_scheduler
from bot.services.alerts import AlertService
from handlers.telegram import admin
from storage.models import AlertRow, AuditRow
from storage.uow import Database
from testkit.botapi import BotApiStub, iter_buttons
from testkit.clock import Clock
from testkit.net import free_port
from tests.e2e.telegram_support import ADMIN_CHAT, Product, running
from tests.e2e.test_cli import ROOT, _run_with_telegram, _stop

ANNA = 1001


@pytest.fixture
async def api() -> AsyncIterator[BotApiStub]:
    async with BotApiStub() as stub:
        yield stub


@pytest.fixture
async def product(db_url: str, api: BotApiStub) -> AsyncIterator[Product]:
    async with running(db_url, api, default_survey="post_call_csat") as started:
        yield started


def buttons(message: dict[str, object]) -> list[str]:
    return [button["text"] for button in iter_buttons(message)]


async def low_score(product: Product, chat: int = ANNA) -> dict[str, object]:
    """The customer in `chat` gives the call a 1; returns the alert message in the team chat."""
    await product.send(chat, "/start", language_code="en")
    await product.tap(chat, "1")
    return product.api.messages(ADMIN_CHAT)[-1]


async def alert_row(product: Product, alert_id: int = 1) -> AlertRow:
    async with product.factory() as session:
        alert = await session.get(AlertRow, alert_id)
    assert alert is not None
    return alert


async def audit(product: Product) -> list[tuple[str, str, str]]:
    async with product.factory() as session:
        rows = await session.scalars(select(AuditRow).order_by(AuditRow.id))
        return [(row.actor, row.action, row.target) for row in rows
                if row.action.startswith("alert.")]


async def test_a_low_score_alert_has_three_buttons_and_resolve_says_who(
        product: Product, api: BotApiStub) -> None:
    alert = await low_score(product)

    assert str(alert["text"]).startswith("⚠️ Low CSAT score: 1 · alert #1")
    assert buttons(alert) == ["Reply", "Resolve", "Open conversation"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in iter_buttons(alert))

    tap = await product.tap(ADMIN_CHAT, "Resolve")

    answered = api.calls_of("answerCallbackQuery")[-1]
    assert answered.params["callback_query_id"] == tap["callback_query"]["id"]
    assert answered.params.get("text") == "Resolved ✓"
    shown = api.message(ADMIN_CHAT, int(str(alert["message_id"])))
    assert shown["text"].startswith("⚠️ Low CSAT score: 1 · alert #1")
    assert shown["text"].endswith("✅ Resolved by Anna")
    assert buttons(shown) == []  # nothing left to press
    row = await alert_row(product)
    assert (row.status, row.resolved_at is not None) == ("resolved", True)
    assert await audit(product) == [(f"telegram:{ADMIN_CHAT}", "alert.resolve", "alert:1")]

    # Another admin's stale keyboard (a second tap) changes nothing and says why.
    await product.feed(api.callback_update(ADMIN_CHAT, "adm:res:1", int(str(alert["message_id"])),
                                           check_button=False))
    assert "resolved already" in api.calls_of("answerCallbackQuery")[-1].params["text"]
    assert len(await audit(product)) == 1
    assert api.errors == []


async def test_reply_through_the_prompt_reaches_the_customer(product: Product,
                                                            api: BotApiStub) -> None:
    await low_score(product)
    before = len(api.sent(ANNA))

    await product.tap(ADMIN_CHAT, "Reply")

    prompt = api.sent(ADMIN_CHAT)[-1]
    assert prompt["text"] == "Reply to the customer (alert #1):"
    assert prompt["reply_markup"]["force_reply"] is True
    prompt_id = api.messages(ADMIN_CHAT)[-1]["message_id"]

    await product.feed(api.message_update(
        ADMIN_CHAT, "Sorry about the wait <3 & we'll call you back", first_name="Maria",
        reply_to_message_id=prompt_id))

    assert len(api.sent(ANNA)) == before + 1
    assert api.messages(ANNA)[-1]["text"] == "Sorry about the wait <3 & we'll call you back"
    assert api.sent(ADMIN_CHAT)[-1]["text"] == "Sent to the customer ✓"
    row = await alert_row(product)
    assert (row.status, row.owner) == ("in_progress", f"telegram:{ADMIN_CHAT}")
    [note] = row.notes
    assert {k: note[k] for k in ("kind", "author", "channel", "text")} == {
        "kind": "reply", "author": f"telegram:{ADMIN_CHAT}", "channel": "telegram",
        "text": "Sorry about the wait <3 & we'll call you back"}
    assert await audit(product) == [(f"telegram:{ADMIN_CHAT}", "alert.reply", "alert:1")]
    assert api.errors == []


async def test_a_reply_to_the_alert_message_itself_reaches_the_customer(
        product: Product, api: BotApiStub) -> None:
    alert = await low_score(product)
    other = await low_score(product, ANNA + 1)  # a second customer: replies go to the right one
    assert str(other["text"]).startswith("⚠️ Low CSAT score: 1 · alert #2")
    sent_to_other = len(api.sent(ANNA + 1))

    await product.feed(api.message_update(ADMIN_CHAT, "We are on it.",
                                          reply_to_message_id=int(str(alert["message_id"]))))

    assert api.messages(ANNA)[-1]["text"] == "We are on it."
    assert len(api.sent(ANNA + 1)) == sent_to_other
    assert api.sent(ADMIN_CHAT)[-1]["text"] == "Sent to the customer ✓"

    # Once resolved, a reply is refused and the admin is told why; the customer gets nothing.
    await product.tap(ADMIN_CHAT, "Resolve", message_id=int(str(alert["message_id"])))
    sent = len(api.sent(ANNA))
    await product.feed(api.message_update(ADMIN_CHAT, "One more thing",
                                          reply_to_message_id=int(str(alert["message_id"]))))
    assert len(api.sent(ANNA)) == sent
    assert api.sent(ADMIN_CHAT)[-1]["text"] == "Not sent: alert 1 is resolved"


async def test_a_customer_who_blocked_the_bot_is_not_reached_and_the_admin_is_told(
        product: Product, api: BotApiStub) -> None:
    alert = await low_score(product)
    api.fail("sendMessage", status=403, chat_id=ANNA)

    await product.feed(api.message_update(ADMIN_CHAT, "Hello?",
                                          reply_to_message_id=int(str(alert["message_id"]))))

    assert api.sent(ADMIN_CHAT)[-1]["text"] == (
        "Not sent: no channel reaches this customer: they blocked the bot")
    row = await alert_row(product)
    assert (row.status, row.notes) == ("open", [])  # nothing sent, nothing recorded


async def test_an_alert_nobody_took_is_re_sent_once_overdue(product: Product,
                                                           api: BotApiStub) -> None:
    clock = Clock(datetime.now(UTC))
    alerts = AlertService(Database(product.factory), clock=clock)
    alert = await low_score(product)
    taken = await low_score(product, ANNA + 1)
    await alerts.take(2, "maria", actor="admin-token")
    sent = len(api.sent(ADMIN_CHAT))

    clock.advance(minutes=29)  # post_call_csat: the default SLA, 30 minutes
    await admin.resend_overdue(product.bot, product.settings, alerts)
    assert len(api.sent(ADMIN_CHAT)) == sent

    clock.advance(minutes=2)
    # Two processes' jobs at once: one of them re-sends it.
    other = AlertService(Database(product.factory), clock=clock)
    await asyncio.gather(admin.resend_overdue(product.bot, product.settings, alerts),
                         admin.resend_overdue(product.bot, product.settings, other))

    [overdue] = api.sent(ADMIN_CHAT)[sent:]
    shown = api.messages(ADMIN_CHAT)[-1]["text"]
    assert shown.startswith("⏰ Overdue: alert #1, nobody took it in 31 min (CSAT score 1)")
    assert "Customer: \u2068Anna\u2069" in shown
    assert overdue["reply_to_message_id"] == alert["message_id"]  # under the alert
    assert [b["text"] for row in overdue["reply_markup"]["inline_keyboard"] for b in row] == [
        "Reply", "Resolve", "Open conversation"]
    assert (await alert_row(product)).overdue_at == clock.now
    assert (await alert_row(product, 2)).overdue_at is None  # taken: not overdue
    assert str(taken["text"]).startswith("⚠️ Low CSAT score: 1 · alert #2")

    clock.advance(hours=2)
    await admin.resend_overdue(product.bot, product.settings, alerts)
    assert len(api.sent(ADMIN_CHAT)) == sent + 1  # never twice

    # A reply to the overdue message reaches the customer too.
    overdue_id = api.messages(ADMIN_CHAT)[-1]["message_id"]
    await product.feed(api.message_update(ADMIN_CHAT, "Calling you now",
                                          reply_to_message_id=overdue_id))
    assert api.messages(ANNA)[-1]["text"] == "Calling you now"

    # Resolved from the reminder: the alert says who, and neither keeps its buttons.
    await product.tap(ADMIN_CHAT, "Resolve", message_id=overdue_id)
    assert api.message(ADMIN_CHAT, overdue_id).get("reply_markup") is None
    original = api.message(ADMIN_CHAT, int(str(alert["message_id"])))
    assert original["text"].endswith("✅ Resolved by Anna")
    assert buttons(original) == []
    assert api.errors == []


def test_the_sla_job_runs_every_minute() -> None:
    async def job() -> None:
        """Stands for admin.resend_overdue."""

    scheduler = build_scheduler(None, None, None, overdue=job)  # type: ignore[arg-type]
    sla = scheduler.get_job("alert-sla")
    assert sla is not None
    assert sla.trigger.interval.total_seconds() == 60
    assert build_scheduler(None, None, None).get_job("alert-sla") is None  # type: ignore[arg-type]


async def test_otklik_run_wires_the_loop(tmp_path: Path) -> None:
    """The real process: the admin's reply typed under the alert reaches the customer, and
    the API resolves it, both through what bot/runner.py wires."""
    port = free_port()
    async with BotApiStub() as api:
        process = await _run_with_telegram(
            tmp_path, api, HTTP_PORT=str(port), ADMIN_CHAT_ID=str(ADMIN_CHAT),
            ADMIN_TOKEN="admin-secret", PYTHONPATH=str(ROOT))  # this tree, not an install
        try:
            await api.push_update(api.message_update(7, "/start"))
            [question] = await api.wait_sent(7, 1, timeout=30)
            two = next(b["callback_data"] for b in iter_buttons(question) if b["text"] == "2")
            await api.push_update(api.callback_update(7, two, api.messages(7)[0]["message_id"]))
            [alert] = await api.wait_sent(ADMIN_CHAT, 1)
            assert buttons(alert) == ["Reply", "Resolve", "Open conversation"]

            alert_id = api.messages(ADMIN_CHAT)[0]["message_id"]
            await api.push_update(api.message_update(ADMIN_CHAT, "We will call you today",
                                                     reply_to_message_id=alert_id))
            await api.wait_for(lambda: any(m["text"] == "We will call you today"
                                           for m in api.messages(7)))
            await api.wait_sent(ADMIN_CHAT, 2)
            assert api.sent(ADMIN_CHAT)[1]["text"] == "Sent to the customer ✓"

            async with aiohttp.ClientSession() as client, client.post(
                    f"http://127.0.0.1:{port}/api/v1/alerts/1/resolve",
                    headers={"Authorization": "Bearer admin-secret"}) as response:
                assert response.status == 200
                assert (await response.json())["status"] == "resolved"
            # Resolved through the API: the team chat's alert says so, without buttons.
            shown = api.message(ADMIN_CHAT, alert_id)
            assert shown["text"].endswith("✅ Resolved by admin")
            assert buttons(shown) == []
        finally:
            output = await _stop(process)
    assert "We will call you today" not in output  # nothing the team wrote is logged
