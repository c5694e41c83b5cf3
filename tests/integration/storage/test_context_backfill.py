"""Migration 0004 counts the answers stored before it into context_rollups, as recording
them would have: downgraded past it and upgraded again, the table comes back the same."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from storage.migrate import downgrade_async, upgrade_async
from storage.models import ContextRollupRow
from tests.integration.storage.support import Factory, store
from tests.integration.test_metrics_service import BASE, MIX_YAML, SCRIPT, Dialogue, run


async def _rows(factory: Factory) -> set[tuple[object, ...]]:
    async with factory() as session:
        return {(r.survey_id, r.step_id, r.key, r.value, r.day, r.channel, r.segment,
                 r.bucket, r.metric, r.count)
                for r in await session.scalars(select(ContextRollupRow))
                if r.count}


async def test_upgrade_backfills_context_rollups(db_url: str, factory: Factory) -> None:
    await store(factory, SCRIPT, MIX_YAML)
    context = (("agent", "Anna"), ("shop", 3), ("vip", True), ("note", "y" * 300))
    for n, (replies, channel) in enumerate([(("9", "4", "2"), "telegram"),
                                            (("2", "back", "8", "5"), "web"),
                                            (("10",), "email")]):
        # 03:00 UTC is the evening before in New York: the survey's day, not UTC's.
        at = BASE + timedelta(days=n, hours=15)
        await run(factory, Dialogue(replies, at=at, channel=channel, segment="vip",
                                    context=context[n:]))
    await run(factory, Dialogue(("7",)))  # no context: nothing to backfill
    recorded = await _rows(factory)
    assert len(recorded) == 3 * 4 + 2 * 3 + 1 * 2  # keys x buckets of each dialogue

    await downgrade_async(db_url, "0003")
    await upgrade_async(db_url)

    assert await _rows(factory) == recorded
