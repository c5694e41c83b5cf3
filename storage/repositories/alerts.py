from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Row, Table, bindparam, func, select, text, update

from storage import outbox
from storage.errors import NotFound
from storage.models import (
    AlertRow,
    AlertStatus,
    AnswerRow,
    CustomerRow,
    DialogueRow,
    IdentityRow,
    Respondent,
)
from storage.repositories.base import Repository

_alerts: Table = AlertRow.__table__  # type: ignore[assignment]
_sessions: Table = DialogueRow.__table__  # type: ignore[assignment]
# Parameters: k_survey_id, k_since. Alerts anonymous answers raised on a survey since then.
_ANONYMOUS_SINCE = (select(func.count())
                    .select_from(_alerts.join(_sessions, _sessions.c.id == _alerts.c.session_id))
                    .where(_alerts.c.survey_id == bindparam("k_survey_id"),
                           _alerts.c.created_at > bindparam("k_since"),
                           _sessions.c.respondent == Respondent.ANONYMOUS))
# Built once: the hot path (a customer's comment) needs only where the latest alert went.
_LATEST = (select(_alerts.c.id, _alerts.c.message_id)
           .where(_alerts.c.session_id == bindparam("k_session_id"))
           .order_by(_alerts.c.id.desc()).limit(1))

# An alert as a human reads it: with its customer, its dialogue's channel and script
# version, and the metric of the answer that raised it (gone if the customer took it back).
VIEW = (
    select(AlertRow, CustomerRow.external_id, CustomerRow.first_name, DialogueRow.channel,
           DialogueRow.script_version, AnswerRow.metric)
    .join(CustomerRow, CustomerRow.id == AlertRow.customer_id)
    .join(DialogueRow, DialogueRow.id == AlertRow.session_id)
    .outerjoin(AnswerRow, AnswerRow.id == AlertRow.answer_id))

# The metric is None when the answer was taken back (its alert stays).
ViewRow = Row[AlertRow, str | None, str | None, str, int, str]
Candidate = Row[int, datetime, str, int]


class Posted(NamedTuple):
    """An alert, and its message in the admin chat once posted."""

    id: int
    message_id: str | None


class Alerts(Repository):
    """Alerts for a human, and their handling by the team. They are raised only with their
    answer, when a turn is recorded (Dialogues.record)."""

    def anonymous_alert_allowed(self, survey_id: str, now: datetime, per_hour: int) -> bool:
        """Whether an anonymous answer may raise one more alert on this survey: fewer than
        `per_hour` in the hour before `now`. Counted in this transaction, in the alerts
        table, so the limit holds across processes: on PostgreSQL a transaction lock per
        survey makes concurrent writers count one after the other (SQLite's writers are one
        at a time already)."""
        connection = self.connection
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                               {"key": f"otklik.anonymous_alerts:{survey_id}"})
        return connection.execute(_ANONYMOUS_SINCE, {
            "k_survey_id": survey_id, "k_since": now - timedelta(hours=1)}
        ).scalar_one() < per_hour

    def latest_for(self, session_id: int) -> Posted | None:
        """The dialogue's latest alert: a customer's comment follows it (the hot path)."""
        row = self.connection.execute(_LATEST, {"k_session_id": session_id}).first()
        return Posted(row.id, row.message_id) if row is not None else None

    def for_session(self, session_id: int) -> Sequence[AlertRow]:
        return self.session.scalars(
            select(AlertRow).where(AlertRow.session_id == session_id).order_by(AlertRow.id)
        ).all()

    def get(self, alert_id: int) -> AlertRow:
        row = self.session.get(AlertRow, alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id}")
        return row

    def for_change(self, alert_id: int) -> AlertRow:
        """The alert, locked until the transaction ends (FOR UPDATE on PostgreSQL; SQLite's
        transactions take the write lock up front): two admins acting on one alert at
        once are applied one after the other."""
        row = self.session.scalar(
            select(AlertRow).where(AlertRow.id == alert_id).with_for_update()
            .execution_options(populate_existing=True))
        if row is None:
            raise NotFound(f"alert {alert_id}")
        return row

    def view(self, alert_id: int) -> ViewRow:
        row = self.session.execute(VIEW.where(AlertRow.id == alert_id)).first()
        if row is None:
            raise NotFound(f"alert {alert_id}")
        return row

    def page(self, *, status: str | None = None, survey: str | None = None,
             owner: str | None = None, overdue: bool | None = None,
             before: int | None = None, limit: int = 50) -> Sequence[ViewRow]:
        """Newest first; the next page starts `before` the last id of this one."""
        query = VIEW
        if status is not None:
            query = query.where(AlertRow.status == status)
        if survey is not None:
            query = query.where(AlertRow.survey_id == survey)
        if owner is not None:
            query = query.where(AlertRow.owner == owner)
        if overdue is not None:
            query = query.where(AlertRow.overdue_at.is_not(None) if overdue
                                else AlertRow.overdue_at.is_(None))
        if before is not None:
            query = query.where(AlertRow.id < before)
        return self.session.execute(query.order_by(AlertRow.id.desc()).limit(limit)).all()

    def unclaimed(self, created_before: datetime) -> Sequence[Candidate]:
        """Open alerts never re-sent as overdue and raised before `created_before`, with
        their dialogue's script: whether each is overdue depends on its script's SLA."""
        return self.session.execute(
            select(AlertRow.id, AlertRow.created_at, DialogueRow.survey_id,
                   DialogueRow.script_version)
            .join(DialogueRow, DialogueRow.id == AlertRow.session_id)
            .where(AlertRow.status == AlertStatus.OPEN, AlertRow.overdue_at.is_(None),
                   AlertRow.created_at <= created_before)
            .order_by(AlertRow.id)).all()

    def mark_overdue(self, alert_id: int, now: datetime) -> bool:
        """Set overdue_at unless another process did, or someone took the alert, since it
        was read: True for the one process that goes on to re-send it."""
        result = self.session.execute(
            update(AlertRow)
            .where(AlertRow.id == alert_id, AlertRow.status == AlertStatus.OPEN,
                   AlertRow.overdue_at.is_(None))
            .values(overdue_at=now))
        return bool(getattr(result, "rowcount", 0))

    def set_message(self, alert_id: int, message_id: str) -> None:
        """Where the alert was posted in the admin chat: the customer's comment follows it."""
        self.session.execute(
            update(AlertRow).where(AlertRow.id == alert_id).values(message_id=message_id))

    def queue_resolved(self, alert: AlertRow, payload: Mapping[str, Any], now: datetime
                       ) -> None:
        """The `alert.resolved` webhook event, in the transaction of the change."""
        outbox.add(self.session, [
            ("alert.resolved", outbox.customer_key(alert.customer_id), payload)], now)

    def address(self, customer_id: int, channel: str) -> tuple[str, bool] | None:
        """The customer's latest address in a channel, and whether it is reachable (not
        blocked, not bounced); None when they have none there."""
        row = self.session.execute(
            select(IdentityRow.address, IdentityRow.reachable)
            .where(IdentityRow.customer_id == customer_id, IdentityRow.channel == channel)
            .order_by(IdentityRow.id.desc()).limit(1)).first()
        return (row.address, row.reachable) if row is not None else None
