"""Upgrading a database that holds data, from every earlier revision: one filled through
the product at head (triggers, deliveries, dialogues with a detractor's comment, its alert,
a multiple choice, an anonymous visitor's answers, rollups, the audit log) is downgraded to
each earlier revision and upgraded again. Every row that revision can hold is still there,
the rollups are what recording counted (respondents and choices included), the figures are
the same, and the product goes on recording into it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, table, text

from bot.services.metrics import MetricsQuery
from bot.services.surveys import Who
from conversations.engine import Reply
from storage.migrate import downgrade_async, upgrade_async
from storage.models import AnswerRow, ContextRollupRow, DialogueRow, RollupRow
from tests.e2e.admin_support import answer_nps
from tests.e2e.trigger_support import Api, serving, trigger

# The tables of the first revision: each later one only adds tables and columns.
FIRST_TABLES = ("customers", "identities", "scripts", "triggers", "deliveries", "sessions",
                "answers", "rollups", "alerts", "audit_log")


async def _counts(api: Api) -> dict[str, int]:
    async with api.engine.connect() as connection:
        return {name: (await connection.execute(
            select(func.count()).select_from(table(name)))).scalar_one()
            for name in FIRST_TABLES}


async def _recorded(api: Api) -> dict[str, Any]:
    """Both rollup tables (without rows counted down to nothing, which a recount does not
    make) and each answer's respondent."""
    async with api.engine.connect() as connection:
        return {model.__tablename__: sorted(tuple(row) for row in await connection.execute(
                    select(model).where(model.count > 0)))
                for model in (RollupRow, ContextRollupRow)} | {
            "respondents": sorted(tuple(row) for row in await connection.execute(
                select(DialogueRow.channel, AnswerRow.step_id, AnswerRow.respondent)
                .join(DialogueRow, DialogueRow.id == AnswerRow.session_id)))}


async def _fill(api: Api) -> None:
    await answer_nps(api, 1, 3, "Долго ждал ответа", email="ivan@example.com",
                     context={"agent": "Anna"})
    await answer_nps(api, 2, 10, "Всё отлично")
    surveys = api.services.surveys
    # A low CSAT in Telegram and what went wrong: a multiple choice of two options.
    status, accepted = await api.post("/api/v1/triggers", {
        **trigger("call-9", telegram_id=9009, external_id="crm-9"), "delay": "PT0S"})
    assert status == 202, accepted
    caller = Who("telegram", "9009")
    await surveys.begin(caller, "post_call_csat")
    await surveys.reply(caller, Reply.typed("1"))
    assert await surveys.reply(caller, Reply.button("what_went_wrong", "waiting,rude"))
    # A visitor of the demo: anonymous.
    visitor = Who("web", "visitor-upgrade-1")
    await surveys.begin(visitor, "nps", context={"agent": "Anna"})
    await surveys.reply(visitor, Reply.typed("6"))


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004", "0005", "0006", "0007",
                                      "0008"])
async def test_an_upgrade_from_an_earlier_revision_keeps_every_row(db_url: str,
                                                                   revision: str) -> None:
    async with serving(db_url) as api:
        await _fill(api)
        before = await _counts(api)
        recorded = await _recorded(api)
        figures = await api.services.figures.compute(MetricsQuery(survey="nps"))
        assert before["alerts"] == 3  # the visitor's 6 too: within the limit
        assert ("web", "score", "anonymous") in recorded["respondents"]
        assert ("telegram", "what_went_wrong", "known") in recorded["respondents"]
        choices = {row[-3]: row[-1] for row in recorded["rollups"]
                   if row[1] == "what_went_wrong"}
        assert choices == {"waiting": 1, "rude": 1, "*": 1}  # one answer, two options

        await downgrade_async(db_url, revision)
        async with api.engine.connect() as connection:
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == revision
        await upgrade_async(db_url)

        assert await _counts(api) == before
        assert await _recorded(api) == recorded
        assert await api.services.figures.compute(MetricsQuery(survey="nps")) == figures
        await answer_nps(api, 3, 9, "Быстро")  # the product records into it as before
        after = await _counts(api)
        assert after["answers"] == before["answers"] + 2
        grouped = await api.services.figures.compute(MetricsQuery(
            survey="nps", group_by="context.agent"))
        assert [(group.key, group.nps.detractors) for group in grouped.groups] == [("Anna", 1)]
