"""UnitOfWork.step, a reply's whole unit of work (read, advance, record, commit), and
record(commit=True), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conversations.engine import Reply, Turn, advance
from storage.models import AlertRow, AnswerRow, DialogueRow
from storage.repositories.dialogues import BY_ID, OPEN_AT
from storage.uow import Duplicate, Step, Stepped, UnitOfWork
from tests.integration.storage.support import NOW, Factory, begin, csat_script, load

SCRIPT = csat_script()


def stepping(text: str) -> Step:
    def step(session: Session, dialogue: DialogueRow) -> tuple[Turn, str]:
        return advance(SCRIPT, dialogue.dialogue_state(), Reply.typed(text), NOW), "UTC"
    return step


async def _stored(factory: Factory) -> tuple[list[tuple[str, int | None]], int]:
    async with UnitOfWork(factory) as uow:
        answers = [(step, score) for step, score in await uow.session.execute(
            select(AnswerRow.step_id, AnswerRow.score).order_by(AnswerRow.id))]
        alerts = await uow.session.scalar(select(func.count()).select_from(AlertRow))
    return answers, alerts or 0


async def test_a_step_reads_advances_records_and_commits(factory: Factory) -> None:
    dialogue = await begin(factory, SCRIPT)

    async with UnitOfWork(factory) as uow:
        stepped = await uow.step(BY_ID, {"k_id": dialogue.id}, stepping("1"), now=NOW)

    assert isinstance(stepped, Stepped)
    assert stepped.dialogue.id == dialogue.id
    assert stepped.dialogue.revision == 1
    assert [(a.step_id, a.score) for a in stepped.recorded] == [("csat", 1)]
    [answer] = stepped.recorded
    assert answer.alert_id is not None  # csat 1 is at the default alert threshold
    assert stepped.turn.prompts[0].text == "What went wrong?"
    assert await _stored(factory) == ([("csat", 1)], 1)
    saved = await load(factory, dialogue.id)
    assert (saved.current_step, saved.revision) == ("why", 1)


async def test_a_step_finds_the_open_dialogue_at_an_address(factory: Factory) -> None:
    dialogue = await begin(factory, SCRIPT)
    async with UnitOfWork(factory) as uow:
        await uow.customers.upsert_identity(dialogue.customer_id, "telegram", "42", now=NOW)
        await uow.commit()

    async with UnitOfWork(factory) as uow:
        elsewhere = await uow.step(OPEN_AT, {"k_channel": "web", "k_address": "42"},
                                   stepping("4"), now=NOW)
        stranger = await uow.step(OPEN_AT, {"k_channel": "telegram", "k_address": "7"},
                                  stepping("4"), now=NOW)
        found = await uow.step(OPEN_AT, {"k_channel": "telegram", "k_address": "42"},
                               stepping("4"), now=NOW)

    assert elsewhere is None
    assert stranger is None
    assert isinstance(found, Stepped)
    assert found.dialogue.id == dialogue.id
    assert await _stored(factory) == ([("csat", 4)], 0)


async def test_a_reply_that_is_re_asked_writes_nothing(factory: Factory) -> None:
    dialogue = await begin(factory, SCRIPT)

    async with UnitOfWork(factory) as uow:
        stepped = await uow.step(BY_ID, {"k_id": dialogue.id}, stepping("eleven"), now=NOW)

    assert isinstance(stepped, Stepped)
    assert stepped.turn.reprompt is not None
    assert stepped.recorded == []
    assert (await load(factory, dialogue.id)).revision == 0
    async with UnitOfWork(factory) as uow:  # the connection is free for the next unit
        again = await uow.step(BY_ID, {"k_id": dialogue.id}, stepping("5"), now=NOW)
    assert isinstance(again, Stepped)
    assert [a.score for a in again.recorded] == [5]


async def test_a_failing_step_stores_nothing(factory: Factory) -> None:
    dialogue = await begin(factory, SCRIPT)

    def broken(session: Session, row: DialogueRow) -> tuple[Turn, str]:
        raise RuntimeError("script went missing")

    async with UnitOfWork(factory) as uow:
        with pytest.raises(RuntimeError, match="went missing"):
            await uow.step(BY_ID, {"k_id": dialogue.id}, broken, now=NOW)

    assert await _stored(factory) == ([], 0)
    assert (await load(factory, dialogue.id)).revision == 0
    async with UnitOfWork(factory) as uow:
        assert await uow.step(BY_ID, {"k_id": dialogue.id}, stepping("3"), now=NOW)
    assert await _stored(factory) == ([("csat", 3)], 0)


async def test_record_can_commit_by_itself(factory: Factory) -> None:
    dialogue = await begin(factory, SCRIPT)

    async with UnitOfWork(factory) as uow:
        row = await uow.sessions.get(dialogue.id)
        turn = advance(SCRIPT, row.dialogue_state(), Reply.typed("5"), NOW)
        await uow.record(row, turn, now=NOW, commit=True)
        # no uow.commit(): leaving the block would roll back what was not committed

    assert await _stored(factory) == ([("csat", 5)], 0)
    assert (await load(factory, dialogue.id)).revision == 1


async def test_an_event_is_applied_once_even_after_its_dialogue_ended(factory: Factory) -> None:
    dialogue = await begin(factory, SCRIPT)
    event = ("telegram", "update-1")

    async with UnitOfWork(factory) as uow:
        first = await uow.step(BY_ID, {"k_id": dialogue.id}, stepping("4"), now=NOW, event=event)
    async with UnitOfWork(factory) as uow:
        again = await uow.step(BY_ID, {"k_id": dialogue.id}, stepping("4"), now=NOW, event=event)
    async with UnitOfWork(factory) as uow:  # no dialogue found: the event is claimed all the same
        lost = await uow.step(BY_ID, {"k_id": 999}, stepping("4"), now=NOW,
                              event=("telegram", "update-2"))
    async with UnitOfWork(factory) as uow:
        lost_again = await uow.step(BY_ID, {"k_id": 999}, stepping("4"), now=NOW,
                                    event=("telegram", "update-2"))

    assert isinstance(first, Stepped)
    assert isinstance(again, Duplicate)
    assert again.dialogue is not None
    assert again.dialogue.id == dialogue.id  # where it stands, to be shown again
    assert lost is None
    assert lost_again == Duplicate(None)
    assert await _stored(factory) == ([("csat", 4)], 0)
    assert (await load(factory, dialogue.id)).revision == 1


async def test_old_events_are_forgotten(factory: Factory) -> None:
    async with UnitOfWork(factory) as uow:
        assert await uow.events.claim("telegram", "7", now=NOW)
        assert await uow.events.claim("telegram", "8", now=NOW + timedelta(days=3))
        await uow.commit()
    async with UnitOfWork(factory) as uow:
        assert await uow.events.prune(NOW + timedelta(days=1)) == 1
        await uow.commit()
    async with UnitOfWork(factory) as uow:
        assert await uow.events.claim("telegram", "7", now=NOW)  # a new update with a reused id
        assert not await uow.events.claim("telegram", "8", now=NOW)
