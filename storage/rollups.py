"""Rollup maintenance: one row per (survey, step, day, channel, segment, bucket), counted up
and down in the transaction that writes or deletes the answer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AnswerRow, Base, RollupRow

TEXT_BUCKET = "*"


def buckets(score: int | None, choices: Sequence[str] | None) -> tuple[str, ...]:
    """Where an answer is counted: its score (a yes/no answer counts as 1 or 0, as
    metrics.share expects), else each option picked, else the text bucket."""
    if score is not None:
        return (str(score),)
    if choices:
        return tuple(choices)
    return (TEXT_BUCKET,)


def rollup_day(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


def upsert_insert(session: AsyncSession, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """INSERT that can say ON CONFLICT, in the session's dialect (both spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


async def count_answer(session: AsyncSession, answer: AnswerRow, timezone: str,
                       delta: int) -> None:
    """Add `delta` (+1 or -1) to each bucket of `answer`, on the day it was given."""
    keys = {"survey_id": answer.survey_id, "step_id": answer.step_id,
            "day": rollup_day(answer.answered_at, timezone), "channel": answer.channel,
            "segment": answer.segment}
    for bucket in buckets(answer.score, answer.choices):
        if delta > 0:
            insert = upsert_insert(session, RollupRow)
            await session.execute(
                insert.values(**keys, bucket=bucket, metric=answer.metric, count=delta)
                .on_conflict_do_update(index_elements=[*keys, "bucket"],
                                       set_={"count": RollupRow.count + insert.excluded.count}))
        else:
            # The row exists: it was counted up when the answer was written.
            await session.execute(
                update(RollupRow).filter_by(**keys, bucket=bucket)
                .values(count=RollupRow.count + delta)
                .execution_options(synchronize_session=False))
