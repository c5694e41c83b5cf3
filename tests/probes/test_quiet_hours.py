"""Probe: late sends keep the customer's quiet hours and opt-out as they are when they go out.

Found: the quiet hours were applied once, when a trigger scheduled its delivery; a reminder,
a retry after backoff and a delivery recovered after SENDING_TIMEOUT went out whenever they
fell due, at night too. The customer here lives in Novosibirsk (UTC+7): the example
post_call_csat survey is quiet from 22:00 to 09:00 there, 15:00 to 02:00 UTC. The clock
starts at 12:00 UTC (19:00 there)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.uow import Database
from tests.e2e.test_dispatch import CHAT, World, world
from tests.e2e.trigger_support import trigger

MORNING = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # 09:00 in Novosibirsk: quiet hours end


async def sent_now(w: World) -> int:
    status, body = await w.api.post("/api/v1/triggers", {
        **trigger(timezone="Asia/Novosibirsk"), "delay": "PT0S"})
    assert status == 202, body
    return int(body["delivery_id"])


async def test_a_reminder_due_at_night_waits_for_the_morning(db_url: str) -> None:
    async with world(db_url) as w:
        delivery_id = await sent_now(w)
        await w.dispatcher.tick()
        assert len(w.questions()) == 1
        w.api.clock.advance(hours=4)  # the reminder is due: 23:00 there
        assert await w.dispatcher.remind() == 0
        delivery = await w.delivery(delivery_id)
        assert (delivery.status, delivery.remind_at) == ("sent", MORNING)
        assert len(w.questions()) == 1
        w.api.clock.now = MORNING - timedelta(minutes=1)
        assert await w.dispatcher.remind() == 0
        w.api.clock.now = MORNING
        assert await w.dispatcher.remind() == 1
        assert w.questions()[1].startswith("Напоминаем")
        assert (await w.delivery(delivery_id)).status == "reminded"
        w.api.clock.advance(hours=1)
        assert await w.dispatcher.remind() == 0  # once
        assert len(w.questions()) == 3


async def test_no_reminder_for_a_customer_who_opted_out_since(db_url: str) -> None:
    async with world(db_url) as w:
        await sent_now(w)
        await w.dispatcher.tick()
        await w.customer.send(CHAT, "/stop")
        await w.customer.tap(CHAT, "Yes, stop")
        asked = len(w.questions())
        w.api.clock.now = MORNING
        assert await w.dispatcher.remind() == 0
        assert len(w.questions()) == asked


async def test_a_retry_that_falls_due_at_night_waits_for_the_morning(db_url: str) -> None:
    async with world(db_url) as w:
        w.api.clock.advance(hours=2, minutes=59, seconds=45)  # 21:59:45 there: not yet quiet
        delivery_id = await sent_now(w)
        w.stub.fail("sendMessage", status=500)  # retried 30 s later: 22:00:15 there
        await w.dispatcher.tick()
        assert w.questions() == []
        w.api.clock.advance(seconds=30)
        await w.dispatcher.tick()
        delivery = await w.delivery(delivery_id)
        assert (delivery.status, delivery.due_at, delivery.attempts) == (
            "scheduled", MORNING, 1)
        assert w.questions() == []
        w.api.clock.now = MORNING
        await w.dispatcher.tick()
        assert len(w.questions()) == 1
        assert (await w.delivery(delivery_id)).status == "sent"


async def test_a_send_recovered_at_night_waits_for_the_morning(db_url: str) -> None:
    async with world(db_url) as w:
        delivery_id = await sent_now(w)
        # A process claims it at 21:55 there and dies before sending.
        w.api.clock.advance(hours=2, minutes=55)
        await Database(w.api.services.factory).write(
            lambda store: store.deliveries.claim_due(w.api.clock.now, 10))
        w.api.clock.advance(minutes=10)  # past SENDING_TIMEOUT: 22:05 there
        await w.dispatcher.tick()
        assert w.questions() == []
        delivery = await w.delivery(delivery_id)
        assert (delivery.status, delivery.due_at) == ("scheduled", MORNING)
        w.api.clock.now = MORNING
        await w.dispatcher.tick()
        assert len(w.questions()) == 1
