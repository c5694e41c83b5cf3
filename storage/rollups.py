"""Rollup maintenance: one row per (survey, step, day, channel, segment, bucket), counted up
and down in the transaction that writes or deletes the answer.

The statements are built once, here, with their parameters bound at execution: a statement
built per call costs more CPU to construct and to key for SQLAlchemy's compiled cache than
the database takes to run it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Base, RollupRow

TEXT_BUCKET = "*"
KEYS = ("survey_id", "step_id", "day", "channel", "segment", "bucket")

_rollups: Table = RollupRow.__table__  # type: ignore[assignment]


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


def _count_up(insert: Any) -> postgresql.Insert | sqlite.Insert:
    statement = insert(_rollups)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(KEYS), set_={"count": _rollups.c.count + statement.excluded.count})


# Parameters: the KEYS, metric and count (the rows to add, > 0).
COUNT_UP = {"postgresql": _count_up(postgresql.insert), "sqlite": _count_up(sqlite.insert)}
# Parameters: k_<key> for each of KEYS and delta (< 0). The row exists: it was counted up
# when the answer was written.
COUNT_DOWN = (update(_rollups)
              .where(*(_rollups.c[key] == bindparam(f"k_{key}") for key in KEYS))
              .values(count=_rollups.c.count + bindparam("delta")))


def count(connection: Connection, answers: Iterable[Any], timezone: str, delta: int) -> None:
    """Add `delta` (+1 or -1) to each bucket of each answer (an AnswerRow or a row with the
    same attributes), on the day it was given: one statement for all of them."""
    counted: Counter[tuple[Any, ...]] = Counter()
    metrics: dict[tuple[Any, ...], str] = {}
    for answer in answers:
        day = rollup_day(answer.answered_at, timezone)
        for bucket in buckets(answer.score, answer.choices):
            key = (answer.survey_id, answer.step_id, day, answer.channel, answer.segment, bucket)
            counted[key] += delta
            metrics[key] = answer.metric
    if not counted:
        return
    if delta > 0:
        connection.execute(COUNT_UP[connection.dialect.name], [
            dict(zip(KEYS, key, strict=True), metric=metrics[key], count=n)
            for key, n in counted.items()])
    else:
        connection.execute(COUNT_DOWN, [
            {f"k_{name}": value for name, value in zip(KEYS, key, strict=True)} | {"delta": n}
            for key, n in counted.items()])
