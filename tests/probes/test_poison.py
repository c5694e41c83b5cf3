"""Probe: one delivery whose outcome cannot be written, in a batch of 200; one webhook event
whose delivery cannot be recorded.

Found: a script's duration that overflowed at send time failed its outcome inside a
group-committed batch; the whole batch rolled back, every delivery in it stayed `sending`
and went out again after SENDING_TIMEOUT, for ever. Here the poison is the database's own
refusal (a trigger that refuses to mark one delivery sent), so the probe holds whatever
the product's code looks like: 199 recorded, one failed with its reason, nothing sent
twice. A database that is away for 10 s mid-batch is no poison: nothing fails, nothing is
sent twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import DeliveryRow, ScriptRow
from tests.e2e.test_dispatch import World, world
from tests.e2e.test_faults import reachable
from tests.e2e.test_webhooks import answer_nps
from tests.e2e.test_webhooks import world as webhooks
from tests.e2e.trigger_support import trigger

BATCH = 200
FIRST_CHAT = 10_000


async def due_now(w: World, count: int) -> list[int]:
    """`count` customers, each with a Telegram chat and a survey due now; their deliveries."""
    ids = []
    for n in range(count):
        status, body = await w.api.post("/api/v1/triggers", {
            **trigger(f"call-{n}", external_id=f"crm-{n}", telegram_id=FIRST_CHAT + n),
            "delay": "PT0S"})
        assert status == 202, body
        ids.append(body["delivery_id"])
    return ids


async def refusing(engine: AsyncEngine, table: str, row_id: int, change: str) -> None:
    """The database refuses one change of one row (`change`: a condition on NEW), and
    allows anything else: a poison that needs no hook in the product's code."""
    async with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            await connection.execute(text(
                f"CREATE TRIGGER poison BEFORE UPDATE ON {table} WHEN NEW.id = {row_id}"
                f" AND {change} BEGIN SELECT RAISE(ABORT, 'poison'); END"))
        else:
            await connection.execute(text(
                f"CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.id = {row_id}"
                f" AND {change} THEN RAISE EXCEPTION 'poison'; END IF; RETURN NEW; END $$"
                " LANGUAGE plpgsql"))
            await connection.execute(text(
                f"CREATE TRIGGER poison BEFORE UPDATE ON {table} FOR EACH ROW "
                "EXECUTE FUNCTION poison()"))


async def deliveries(w: World) -> dict[int, DeliveryRow]:
    async with w.api.services.factory() as session:
        return {row.id: row for row in await session.scalars(select(DeliveryRow))}


def messages_per_chat(w: World) -> Counter[int]:
    return Counter(call.params["chat_id"] for call in w.stub.calls_of("sendMessage") if call.ok)


async def test_one_unrecordable_outcome_fails_alone_and_nothing_is_sent_twice(
        db_url: str) -> None:
    async with world(db_url, telegram_rate=10_000.0) as w:
        ids = await due_now(w, BATCH)
        poison = ids[BATCH // 2]
        await refusing(w.api.engine, "deliveries", poison, "NEW.status = 'sent'")
        assert await w.dispatcher.tick() == BATCH
        rows = await deliveries(w)
        assert Counter(row.status for row in rows.values()) == {"sent": 199, "failed": 1}
        assert (rows[poison].status, rows[poison].reason) == ("failed", "unrecordable")
        assert "poison" in (rows[poison].last_error or "")
        w.api.clock.advance(minutes=6)  # past SENDING_TIMEOUT (5 minutes)
        assert await w.dispatcher.tick() == 0
        assert await w.dispatcher.recover() == 0
        assert messages_per_chat(w) == {FIRST_CHAT + n: 1 for n in range(BATCH)}


async def test_a_10s_outage_mid_batch_fails_nothing_and_sends_nothing_twice(
        db_url: str) -> None:
    async with reachable(db_url) as (url, away), world(url, telegram_rate=10_000.0) as w:
        await due_now(w, BATCH)
        w.stub.delay("sendMessage", 1.0, times=None)  # the batch is under way for a second
        sending = asyncio.create_task(w.dispatcher.tick())
        await w.stub.wait_for(lambda: len(w.stub.calls_of("sendMessage")) >= BATCH // 2,
                              timeout=60)  # a loaded machine claims slowly
        async with away():
            await asyncio.sleep(10)
        assert await asyncio.wait_for(sending, timeout=120) == BATCH
        w.stub.clear_faults()
        rows = await deliveries(w)
        assert Counter(row.status for row in rows.values()) == {"sent": BATCH}
        w.api.clock.advance(minutes=6)
        assert await w.dispatcher.tick() == 0
        assert messages_per_chat(w) == {FIRST_CHAT + n: 1 for n in range(BATCH)}


async def test_one_unrecordable_webhook_event_is_set_aside_and_the_rest_go_once(
        db_url: str) -> None:
    async with webhooks(db_url) as w:
        for n in range(3):  # three customers, an answer, an alert and a comment each
            await answer_nps(w.api, f"k{n}", 3, "Slow", external_id=f"crm-{n}",
                             telegram_id=n + 1)
        events = await w.outbox()
        poison = events[0].id
        await refusing(w.api.engine, "outbox", poison, "NEW.delivered_at IS NOT NULL")
        await w.sender.tick()
        w.api.clock.advance(minutes=10)  # past every lease and retry
        await w.sender.tick()
        rows = {row.id: row for row in await w.outbox()}
        assert rows[poison].failed_at is not None
        assert rows[poison].delivered_at is None
        assert "set aside" in (rows[poison].last_error or "")
        # the poisoned customer's later events were not held back behind it
        assert all(row.delivered_at is not None for row in rows.values() if row.id != poison)
        sent = Counter(item.delivery for item in w.receiver.got)
        assert sent == {row.id: 1 for row in events}


async def test_a_version_stored_before_the_bounds_still_sends_with_its_durations_capped(
        db_url: str) -> None:
    """A script stored when a year and a half to expire validated: today's bounds refuse it
    as a new version, but the stored one keeps running, capped at the bounds (refused when
    read back, it would fail every batch it is in)."""
    async with world(db_url) as w:
        async with w.api.engine.begin() as connection:
            body = (await connection.execute(select(ScriptRow.body).where(
                ScriptRow.survey_id == "post_call_csat", ScriptRow.active))).scalar_one()
            body["policy"] |= {"expires_after": "P500D", "reminder_after": "P60D"}
            await connection.execute(update(ScriptRow).where(
                ScriptRow.survey_id == "post_call_csat", ScriptRow.active).values(body=body))
        [delivery_id] = await due_now(w, 1)
        assert await w.dispatcher.tick() == 1
        delivery = (await deliveries(w))[delivery_id]
        assert delivery.status == "sent"
        assert delivery.expires_at == w.api.clock.now + timedelta(days=365)
        assert delivery.remind_at == w.api.clock.now + timedelta(days=30)
