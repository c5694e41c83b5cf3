"""The reads behind a survey's reports beside the rollups (bot.services.metrics, digest):
deliveries by status and dialogues by status and step, of one survey in a period, for its
response rate, completion rate and drop-off; its open alerts."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select, union_all

from storage.models import (
    AlertRow,
    AlertStatus,
    DeliveryRow,
    DialogueRow,
    DialogueStatus,
    ScriptRow,
)
from storage.repositories.base import Repository


class Metrics(Repository):
    def delivered(self, survey_id: str, statuses: Collection[str], *,
                  since: datetime | None, until: datetime | None, channel: str | None
                  ) -> dict[str, int]:
        """{status: deliveries} of those due in [since, until) in `statuses`, on the channel
        they went out in. Answered by an index alone (migration 0006): every status named,
        so SQLite seeks to each and counts along the time range in index order."""
        query = (select(DeliveryRow.status, func.count())
                 .where(DeliveryRow.survey_id == survey_id, DeliveryRow.status.in_(statuses))
                 .group_by(DeliveryRow.status))
        if since is not None:
            query = query.where(DeliveryRow.due_at >= since)
        if until is not None:
            query = query.where(DeliveryRow.due_at < until)
        if channel is not None:
            query = query.where(
                func.coalesce(DeliveryRow.sent_channel, DeliveryRow.channel) == channel)
        return {status: int(n) for status, n in self.session.execute(query)}

    def standing(self, survey_id: str, respondent: str, *, since: datetime | None,
                 until: datetime | None, channel: str | None
                 ) -> list[tuple[str, str | None, int]]:
        """(status, current step, dialogues) of the respondents' dialogues started in
        [since, until). Every status and every step a dialogue can stand at (of every
        version: some are still on an older one) is named, and the ended ones without a
        step are read apart, so the index (migration 0006) is sought per (status, step):
        "IS NULL OR IN" would make SQLite scan the survey's index entries of all time."""
        sessions = (select(DialogueRow.status, DialogueRow.current_step, func.count())
                    .where(DialogueRow.survey_id == survey_id,
                           DialogueRow.respondent == respondent,
                           DialogueRow.status.in_(list(DialogueStatus)))
                    .group_by(DialogueRow.status, DialogueRow.current_step))
        if since is not None:
            sessions = sessions.where(DialogueRow.started_at >= since)
        if until is not None:
            sessions = sessions.where(DialogueRow.started_at < until)
        if channel is not None:
            sessions = sessions.where(DialogueRow.channel == channel)
        bodies = self.session.scalars(select(ScriptRow.body["steps"]).where(
            ScriptRow.survey_id == survey_id))
        steps = sorted({step["id"] for steps in bodies for step in steps})
        return [(status, step, int(n)) for status, step, n in self.session.execute(union_all(
            sessions.where(DialogueRow.current_step.in_(steps)),
            sessions.where(DialogueRow.current_step.is_(None))))]

    def open_alerts(self, survey_id: str) -> int:
        return int(self.session.scalar(
            select(func.count()).select_from(AlertRow)
            .where(AlertRow.survey_id == survey_id, AlertRow.status == AlertStatus.OPEN)) or 0)
