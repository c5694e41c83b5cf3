"""Upgrading a database that holds data, from every earlier revision: one filled through
the product at head (triggers, deliveries, dialogues with a detractor's comment, its alert,
rollups, the audit log) is downgraded to each earlier revision and upgraded again. Every
row that revision can hold is still there, the figures are the same, and the product goes
on recording into it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, table, text

from bot.services.metrics import MetricsQuery, compute
from storage.migrate import downgrade_async, upgrade_async
from tests.e2e.admin_support import answer_nps
from tests.e2e.trigger_support import Api, serving

# The tables of the first revision: each later one only adds tables and columns.
FIRST_TABLES = ("customers", "identities", "scripts", "triggers", "deliveries", "sessions",
                "answers", "rollups", "alerts", "audit_log")


async def _counts(api: Api) -> dict[str, int]:
    async with api.engine.connect() as connection:
        return {name: (await connection.execute(
            select(func.count()).select_from(table(name)))).scalar_one()
            for name in FIRST_TABLES}


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004"])
async def test_an_upgrade_from_an_earlier_revision_keeps_every_row(db_url: str,
                                                                   revision: str) -> None:
    async with serving(db_url) as api:
        await answer_nps(api, 1, 3, "Долго ждал ответа", email="ivan@example.com",
                         context={"agent": "Anna"})
        await answer_nps(api, 2, 10, "Всё отлично")
        before = await _counts(api)
        figures = await compute(api.services.factory, MetricsQuery(survey="nps"))
        assert before["alerts"] == 1

        await downgrade_async(db_url, revision)
        async with api.engine.connect() as connection:
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == revision
        await upgrade_async(db_url)

        assert await _counts(api) == before
        assert await compute(api.services.factory, MetricsQuery(survey="nps")) == figures
        await answer_nps(api, 3, 9, "Быстро")  # the product records into it as before
        after = await _counts(api)
        assert after["answers"] == before["answers"] + 2
        grouped = await compute(api.services.factory, MetricsQuery(
            survey="nps", group_by="context.agent"))
        assert [(group.key, group.nps.detractors) for group in grouped.groups] == [("Anna", 1)]
