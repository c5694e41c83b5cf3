"""Rollup maintenance: one row per (survey, step, day, channel, segment, respondent, bucket),
and one per trigger-context key and value besides (context_rollups), counted up and down in
the transaction that writes or deletes the answer.

An answer is counted under its score; a choice answer under each option picked AND once
under TEXT_BUCKET ("*"); a text answer under TEXT_BUCKET. So a step's number of answers is
the sum of its score buckets for a scored step (NPS, CSAT, CES, CLI, yes/no) and its "*"
bucket for a text or choice step: a multiple choice of three options is one answer, not
three. `respondent` keeps known customers' answers apart from anonymous visitors'
(storage.models.Respondent): every report reads one or the other, never a blend by accident.

The statements are built once, here, with their parameters bound at execution: a statement
built per call costs more CPU to construct and to key for SQLAlchemy's compiled cache than
the database takes to run it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, Update, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Base, ContextRollupRow, RollupRow

TEXT_BUCKET = "*"
KEYS = ("survey_id", "step_id", "day", "channel", "segment", "respondent", "bucket")
CONTEXT_KEYS = ("survey_id", "step_id", "key", "value", "day", "channel", "segment",
                "respondent", "bucket")
# A context value longer than this is counted under its first MAX_VALUE characters: an id or
# a name, never a free text, belongs in a report's groups.
MAX_KEY, MAX_VALUE = 64, 200

_rollups: Table = RollupRow.__table__  # type: ignore[assignment]
_context_rollups: Table = ContextRollupRow.__table__  # type: ignore[assignment]


def buckets(score: int | None, choices: Sequence[str] | None) -> tuple[str, ...]:
    """Where an answer is counted: its score (a yes/no answer counts as 1 or 0, as
    metrics.share expects), else each option picked and the answer once in the text bucket,
    else the text bucket."""
    if score is not None:
        return (str(score),)
    if choices:
        return (*choices, TEXT_BUCKET)
    return (TEXT_BUCKET,)


def context_pairs(context: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The (key, value) pairs an answer is counted under in context_rollups: scalar values
    only (a list or an object is no group), as text, truncated."""
    if not context:
        return []
    return [(key[:MAX_KEY], str(value)[:MAX_VALUE]) for key, value in context.items()
            if isinstance(value, str | int | float | bool)]


def rollup_day(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


def upsert_insert(session: AsyncSession, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """INSERT that can say ON CONFLICT, in the session's dialect (both spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def _count_up(insert: Any, table: Table, keys: Sequence[str]
              ) -> postgresql.Insert | sqlite.Insert:
    statement = insert(table)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(keys), set_={"count": table.c.count + statement.excluded.count})


def _count_down(table: Table, keys: Sequence[str]) -> Update:
    return (update(table)
            .where(*(table.c[key] == bindparam(f"k_{key}") for key in keys))
            .values(count=table.c.count + bindparam("delta")))


# Parameters: the KEYS, metric and count (the rows to add, > 0).
COUNT_UP = {"postgresql": _count_up(postgresql.insert, _rollups, KEYS),
            "sqlite": _count_up(sqlite.insert, _rollups, KEYS)}
# Parameters: k_<key> for each of KEYS and delta (< 0). The row exists: it was counted up
# when the answer was written.
COUNT_DOWN = _count_down(_rollups, KEYS)
# The same for context_rollups, over CONTEXT_KEYS.
CONTEXT_UP = {"postgresql": _count_up(postgresql.insert, _context_rollups, CONTEXT_KEYS),
              "sqlite": _count_up(sqlite.insert, _context_rollups, CONTEXT_KEYS)}
CONTEXT_DOWN = _count_down(_context_rollups, CONTEXT_KEYS)


def count(connection: Connection, answers: Iterable[Any], timezone: str, delta: int) -> None:
    """Add `delta` (+1 or -1) to each bucket of each answer (an AnswerRow or a row with the
    same attributes, context included), on the day it was given, in rollups and, under each
    key of its context, in context_rollups: one statement for each table, none for a
    table with nothing to count."""
    counted: Counter[tuple[Any, ...]] = Counter()
    in_context: Counter[tuple[Any, ...]] = Counter()
    metrics: dict[tuple[Any, ...], str] = {}  # by (survey, step)
    for answer in answers:
        day = rollup_day(answer.answered_at, timezone)
        pairs = context_pairs(answer.context)
        metrics[answer.survey_id, answer.step_id] = answer.metric
        for bucket in buckets(answer.score, answer.choices):
            counted[answer.survey_id, answer.step_id, day, answer.channel, answer.segment,
                    answer.respondent, bucket] += delta
            for key, value in pairs:
                in_context[answer.survey_id, answer.step_id, key, value, day, answer.channel,
                           answer.segment, answer.respondent, bucket] += delta
    _apply(connection, counted, KEYS, COUNT_UP, COUNT_DOWN, metrics, delta)
    _apply(connection, in_context, CONTEXT_KEYS, CONTEXT_UP, CONTEXT_DOWN, metrics, delta)


def _apply(connection: Connection, counted: Counter[tuple[Any, ...]], keys: Sequence[str],
           up: dict[str, Any], down: Update, metrics: dict[tuple[Any, ...], str],
           delta: int) -> None:
    if not counted:
        return
    if delta > 0:
        connection.execute(up[connection.dialect.name], [
            dict(zip(keys, key, strict=True), metric=metrics[key[:2]], count=n)
            for key, n in counted.items()])
    else:
        connection.execute(down, [
            {f"k_{name}": value for name, value in zip(keys, key, strict=True)} | {"delta": n}
            for key, n in counted.items()])
