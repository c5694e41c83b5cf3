"""The channel-neutral survey service on a real database: dialogues, answers, alerts,
restarts, redelivered replies and two processes answering one chat."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.examples import EXAMPLES
from bot.services.scripts import load_scripts
from bot.services.surveys import NoSurvey, SurveyService, Who
from conversations.engine import PromptKind, Reply
from conversations.replies import Problem
from storage.db import create_engine, session_factory
from storage.models import AlertRow, AnswerRow, DialogueRow
from storage.uow import Database, Store
from testkit.migrated import load_examples

SURVEYS = EXAMPLES
NOW = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)
ANNA = Who("telegram", "1001", first_name="Anna", locale="en")
Factory = async_sessionmaker[AsyncSession]


async def loaded(factory: Factory) -> SurveyService:
    await load_examples(factory, NOW)
    return SurveyService(Database(factory), clock=lambda: NOW)


async def stored(factory: Factory) -> tuple[list[tuple[str, int | None, str | None]], int, str]:
    async with factory() as session:
        answers = [(step, score, text) for step, score, text in await session.execute(
            select(AnswerRow.step_id, AnswerRow.score, AnswerRow.text).order_by(AnswerRow.id))]
        alerts = await session.scalar(select(func.count()).select_from(AlertRow))
        status = await session.scalar(
            select(DialogueRow.status).order_by(DialogueRow.id.desc()))
    return answers, alerts or 0, str(status)


async def test_a_whole_nps_dialogue_with_a_low_score_alert(factory: Factory) -> None:
    surveys = await loaded(factory)
    opened = await surveys.begin(ANNA, "nps")
    assert [p.kind for p in opened.prompts] == [PromptKind.SCALE]
    assert opened.prompts[0].text.startswith("How likely are you to recommend us")

    wrong = await surveys.reply(ANNA, Reply.typed("11"))
    assert wrong is not None
    assert wrong.reprompt is not None
    assert wrong.reprompt.problem is Problem.OUT_OF_RANGE

    low = await surveys.reply(ANNA, Reply.button("score", "3"))
    assert low is not None
    assert [(a.step, a.score) for a in low.alerts] == [("score", 3)]
    assert low.prompts[0].text == "What is the main reason for your score?"

    done = await surveys.reply(ANNA, Reply.typed("Slow delivery"))
    assert done is not None
    assert done.finished
    assert done.prompts[-1].kind is PromptKind.MESSAGE
    assert await stored(factory) == ([("score", 3, None), ("reason", None, "Slow delivery")],
                                     1, "completed")
    assert await surveys.reply(ANNA, Reply.typed("hello?")) is None


async def test_begin_again_shows_the_open_question_without_a_new_dialogue(
        factory: Factory) -> None:
    surveys = await loaded(factory)
    first = await surveys.begin(ANNA, "nps")
    await surveys.reply(ANNA, Reply.typed("9"))
    again = await surveys.begin(ANNA, "nps")
    assert again.session_id == first.session_id
    assert again.prompts[0].step == "reason"
    other = await surveys.begin(ANNA, "ces_support")
    assert other.session_id != first.session_id
    async with factory() as session:
        statuses = (await session.scalars(
            select(DialogueRow.status).order_by(DialogueRow.id))).all()
    assert statuses == ["abandoned", "active"]


async def test_a_redelivered_tap_records_one_answer(factory: Factory) -> None:
    surveys = await loaded(factory)
    await surveys.begin(ANNA, "nps")
    tap = Reply.button("score", "10")
    await surveys.reply(ANNA, tap)
    again = await surveys.reply(ANNA, tap)
    assert again is not None
    assert again.reprompt is not None
    assert again.reprompt.problem is Problem.STALE
    assert (await stored(factory))[0] == [("score", 10, None)]


async def test_a_new_process_continues_where_the_customer_was(db_url: str,
                                                              factory: Factory) -> None:
    surveys = await loaded(factory)
    await surveys.begin(ANNA, "cli_quarterly")
    await surveys.reply(ANNA, Reply.typed("9"))
    await surveys.reply(ANNA, Reply.typed("8"))

    engine = create_engine(db_url)  # a restart: nothing shared but the database
    try:
        restarted = SurveyService(Database(session_factory(engine)), clock=lambda: NOW)
        shown = await restarted.begin(ANNA, "cli_quarterly")
        assert shown.prompts[0].step == "loyalty.upsell"
        outcome = await restarted.reply(ANNA, Reply.typed("7"))
        assert outcome is not None
        assert outcome.prompts[0].step == "loyalty.switch"
    finally:
        await engine.dispose()
    assert [step for step, _, _ in (await stored(factory))[0]] == [
        "loyalty.recommend", "loyalty.retain", "loyalty.upsell"]


async def test_two_processes_answering_one_chat_record_one_answer(db_url: str,
                                                                  factory: Factory) -> None:
    surveys = await loaded(factory)
    await surveys.begin(ANNA, "nps")
    engines = [create_engine(db_url) for _ in range(2)]
    try:
        workers = [SurveyService(Database(session_factory(e)), clock=lambda: NOW) for e in engines]
        outcomes = await asyncio.gather(
            *(w.reply(ANNA, Reply.button("score", score)) for w, score in
              zip(workers, ("9", "2"), strict=True)))
    finally:
        for engine in engines:
            await engine.dispose()
    problems = sorted(str(o.reprompt.problem) if o and o.reprompt else "ok" for o in outcomes)
    assert problems == ["ok", "stale"]
    answers, alerts, _ = await stored(factory)
    assert len(answers) == 1
    assert alerts == (1 if answers[0][1] == 2 else 0)


async def test_a_dialogue_finishes_on_the_version_it_started_with(factory: Factory,
                                                                  tmp_path: Path) -> None:
    surveys = await loaded(factory)
    await surveys.begin(ANNA, "nps")
    changed = tmp_path / "nps.yaml"
    changed.write_text((SURVEYS / "nps.yaml").read_text(encoding="utf-8").replace(
        "What is the main reason for your score?", "Why that score?"), encoding="utf-8")
    stored = await load_scripts(Database(factory), [changed], actor="tests", now=NOW)
    assert stored[0].version == 2

    old = await surveys.reply(ANNA, Reply.typed("8"))
    assert old is not None
    assert old.prompts[0].text == "What is the main reason for your score?"
    ben = Who("telegram", "1002", locale="en")
    await surveys.begin(ben, "nps")
    new = await surveys.reply(ben, Reply.typed("8"))
    assert new is not None
    assert new.prompts[0].text == "Why that score?"


async def test_new_dialogues_start_on_the_active_version_only(factory: Factory,
                                                              tmp_path: Path) -> None:
    surveys = await loaded(factory)
    changed = tmp_path / "nps.yaml"
    changed.write_text((SURVEYS / "nps.yaml").read_text(encoding="utf-8").replace(
        "What is the main reason for your score?", "Why that score?"), encoding="utf-8")
    await load_scripts(Database(factory), [changed], actor="tests", now=NOW)

    def switch(store: Store) -> None:
        store.scripts.set_active("nps", 1)  # a rollback to the first version
        store.scripts.set_active("ces_support", None)  # switched off

    await Database(factory).write(switch)

    await surveys.begin(ANNA, "nps")
    rolled_back = await surveys.reply(ANNA, Reply.typed("8"))
    assert rolled_back is not None
    assert rolled_back.prompts[0].text == "What is the main reason for your score?"
    with pytest.raises(NoSurvey):
        await surveys.begin(Who("telegram", "1003"), "ces_support")
