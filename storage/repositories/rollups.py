from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select

from storage.models import ContextRollupRow, RollupRow
from storage.repositories.base import Repository
from storage.rollups import TEXT_BUCKET


@dataclass(frozen=True, slots=True)
class StepCounts:
    """One step's answers by bucket. `scores` is the {score: count} that
    conversations.metrics takes (nps, csat, ces; cli per item)."""

    metric: str
    buckets: dict[str, int] = field(default_factory=dict)

    @property
    def scores(self) -> dict[int, int]:
        return {int(b): n for b, n in self.buckets.items() if b.lstrip("-").isdigit()}

    @property
    def total(self) -> int:
        """Answers: a text or choice step's "*" bucket (where a choice is counted once as a
        whole, besides once per option picked), else the sum of the score buckets."""
        if TEXT_BUCKET in self.buckets:
            return self.buckets[TEXT_BUCKET]
        return sum(self.scores.values())


# What a report may group rollups by, beside nothing: a column of both tables, or (context
# rollups only) the context value.
GROUP_COLUMNS = ("day", "channel", "segment", "respondent", "value")


@dataclass(frozen=True, slots=True)
class ContextKey:
    """Read context_rollups under this key, only its `value` if one is given."""

    key: str
    value: str | None = None


class Rollups(Repository):
    """Daily answer counts, the metrics' source."""

    def counts(self, survey_id: str, *, start: date | None = None, end: date | None = None,
               channel: str | None = None, segment: str | None = None,
               respondent: str | None = None) -> dict[str, StepCounts]:
        """Counts per step id ("score", "loyalty.switch") over days start..end, both
        included, optionally for one channel, segment or kind of respondent (known or
        anonymous; both without)."""
        query = (select(RollupRow.step_id, RollupRow.metric, RollupRow.bucket,
                        func.sum(RollupRow.count))
                 .where(RollupRow.survey_id == survey_id)
                 .group_by(RollupRow.step_id, RollupRow.metric, RollupRow.bucket)
                 .having(func.sum(RollupRow.count) > 0)
                 .order_by(RollupRow.step_id, RollupRow.bucket))
        if start is not None:
            query = query.where(RollupRow.day >= start)
        if end is not None:
            query = query.where(RollupRow.day <= end)
        if channel is not None:
            query = query.where(RollupRow.channel == channel)
        if segment is not None:
            query = query.where(RollupRow.segment == segment)
        if respondent is not None:
            query = query.where(RollupRow.respondent == respondent)
        result: dict[str, StepCounts] = {}
        for step_id, metric, bucket, count in self.session.execute(query):
            result.setdefault(step_id, StepCounts(metric)).buckets[bucket] = int(count)
        return result

    def grouped(self, survey_id: str, steps: Collection[str], *, by: Sequence[str],
                start: date | None = None, end: date | None = None,
                channel: str | None = None, segment: str | None = None,
                respondent: str | None = None, context: ContextKey | None = None
                ) -> list[tuple[tuple[Any, ...], str, str, int]]:
        """(group, step id, bucket, count) for the given answer keys over days start..end,
        both included, grouped by columns of GROUP_COLUMNS (the group is their values, ()
        for none), from context_rollups when `context` is given, else from rollups. Buckets
        that were counted down to nothing are left out."""
        table: Any = ContextRollupRow if context is not None else RollupRow
        group = [getattr(table, column) for column in by]
        total = func.sum(table.count)
        query = (select(*group, table.step_id, table.bucket, total)
                 .where(table.survey_id == survey_id, table.step_id.in_(list(steps)))
                 .group_by(*group, table.step_id, table.bucket).having(total > 0))
        for column, value in (("channel", channel), ("segment", segment),
                              ("respondent", respondent)):
            if value is not None:
                query = query.where(getattr(table, column) == value)
        if start is not None:
            query = query.where(table.day >= start)
        if end is not None:
            query = query.where(table.day <= end)
        if context is not None:
            query = query.where(table.key == context.key)
            if context.value is not None:
                query = query.where(table.value == context.value)
        width = len(group)
        return [(tuple(row[:width]), row[width], row[width + 1], int(row[width + 2]))
                for row in self.session.execute(query)]
