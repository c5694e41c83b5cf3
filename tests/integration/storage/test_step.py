"""A reply's whole transaction (claim its event, read the dialogue, advance, record,
commit: SurveyService over Database.write), and Database.write's own promise, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.services.surveys import SurveyService, Who
from conversations.engine import Reply
from storage.models import AlertRow, AnswerRow, ChannelEventRow, DialogueRow
from storage.uow import Database, Store
from tests.integration.storage.support import NOW, Factory, begin, csat_script, load, store

SCRIPT = csat_script()
AT = Who("telegram", "42")


async def _stored(factory: Factory) -> tuple[list[tuple[str, int | None]], int]:
    async with factory() as session:
        answers = [(step, score) for step, score in await session.execute(
            select(AnswerRow.step_id, AnswerRow.score).order_by(AnswerRow.id))]
        alerts = await session.scalar(select(func.count()).select_from(AlertRow))
    return answers, alerts or 0


async def _dialogue_at(factory: Factory, who: Who = AT) -> tuple[SurveyService, DialogueRow]:
    """The survey service, and a dialogue of SCRIPT (stored) open at `who`."""
    await store(factory, SCRIPT)
    dialogue = await begin(factory, SCRIPT)
    await Database(factory).write(lambda s: s.customers.bind(
        dialogue.customer_id, who.channel, who.address, now=NOW))
    return SurveyService(Database(factory), clock=lambda: NOW), dialogue


async def test_a_reply_reads_advances_records_and_commits(factory: Factory) -> None:
    surveys, dialogue = await _dialogue_at(factory)

    outcome = await surveys.reply(AT, Reply.typed("1"))

    assert outcome is not None
    assert outcome.session_id == dialogue.id
    [alert] = outcome.alerts  # csat 1 is at the default alert threshold
    assert (alert.step, alert.score) == ("csat", 1)
    assert outcome.prompts[0].text == "What went wrong?"
    assert await _stored(factory) == ([("csat", 1)], 1)
    saved = await load(factory, dialogue.id)
    assert (saved.current_step, saved.revision) == ("why", 1)


async def test_a_reply_finds_the_open_dialogue_at_its_address_only(factory: Factory) -> None:
    surveys, dialogue = await _dialogue_at(factory)

    assert await surveys.reply(Who("web", "42"), Reply.typed("4")) is None
    assert await surveys.reply(Who("telegram", "7"), Reply.typed("4")) is None
    found = await surveys.reply(AT, Reply.typed("4"))

    assert found is not None
    assert found.session_id == dialogue.id
    assert await _stored(factory) == ([("csat", 4)], 0)


async def test_a_reply_that_is_re_asked_writes_nothing(factory: Factory) -> None:
    surveys, dialogue = await _dialogue_at(factory)

    outcome = await surveys.reply(AT, Reply.typed("eleven"))

    assert outcome is not None
    assert outcome.reprompt is not None
    assert await _stored(factory) == ([], 0)
    assert (await load(factory, dialogue.id)).revision == 0
    again = await surveys.reply(AT, Reply.typed("5"))  # the connection is free for the next
    assert again is not None
    assert await _stored(factory) == ([("csat", 5)], 0)


async def test_a_failing_write_stores_nothing(factory: Factory) -> None:
    db = Database(factory)

    def broken(store: Store) -> None:
        store.events.claim("telegram", "update-1", NOW)  # written, then the failure
        raise RuntimeError("script went missing")

    with pytest.raises(RuntimeError, match="went missing"):
        await db.write(broken)

    async with factory() as session:
        assert await session.scalar(select(func.count()).select_from(ChannelEventRow)) == 0
    assert await db.write(lambda store: store.events.claim("telegram", "update-1", NOW))


async def test_a_read_commits_nothing(factory: Factory) -> None:
    db = Database(factory)

    assert await db.read(lambda store: store.events.claim("telegram", "update-1", NOW))

    async with factory() as session:
        assert await session.scalar(select(func.count()).select_from(ChannelEventRow)) == 0


async def test_an_event_is_applied_once_even_after_its_dialogue_ended(factory: Factory) -> None:
    surveys, dialogue = await _dialogue_at(factory)
    event = ("telegram", "update-1")

    first = await surveys.reply(AT, Reply.typed("4"), event=event)
    again = await surveys.reply(AT, Reply.typed("4"), event=event)
    # No dialogue found: the event is claimed all the same.
    stranger = Who("telegram", "7")
    lost = await surveys.reply(stranger, Reply.typed("4"), event=("telegram", "update-2"))
    lost_again = await surveys.reply(stranger, Reply.typed("4"), event=("telegram", "update-2"))

    assert first is not None
    assert not first.duplicate
    assert again is not None
    assert again.duplicate
    assert again.session_id == dialogue.id  # where it stands, to be shown again
    assert lost is None
    assert lost_again is not None
    assert (lost_again.duplicate, lost_again.session_id) == (True, 0)
    assert await _stored(factory) == ([("csat", 4)], 0)
    assert (await load(factory, dialogue.id)).revision == 1


async def test_old_events_are_forgotten(factory: Factory) -> None:
    db = Database(factory)
    assert await db.write(lambda store: store.events.claim("telegram", "7", NOW))
    assert await db.write(lambda store: store.events.claim(
        "telegram", "8", NOW + timedelta(days=3)))

    assert await db.write(lambda store: store.events.prune(NOW + timedelta(days=1))) == 1

    # A new update with a reused id is applied; a recent one is not applied again.
    assert await db.write(lambda store: store.events.claim("telegram", "7", NOW))
    assert not await db.write(lambda store: store.events.claim("telegram", "8", NOW))
