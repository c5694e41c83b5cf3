from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select

from storage.models import RollupRow
from storage.repositories.base import Repository


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
        """Answers, except that a multiple choice counts once per option picked."""
        return sum(self.buckets.values())


class RollupRepository(Repository):
    async def counts(self, survey_id: str, *, start: date | None = None,
                     end: date | None = None, channel: str | None = None,
                     segment: str | None = None) -> dict[str, StepCounts]:
        """Counts per step id ("score", "loyalty.switch") over days start..end, both
        included, optionally for one channel or segment."""
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
        result: dict[str, StepCounts] = {}
        for step_id, metric, bucket, count in await self.session.execute(query):
            result.setdefault(step_id, StepCounts(metric)).buckets[bucket] = int(count)
        return result
