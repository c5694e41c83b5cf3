from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.orm import Session

from storage.errors import NotFound
from storage.models import AlertRow
from storage.repositories.base import Repository

_alerts: Table = AlertRow.__table__  # type: ignore[assignment]
# Built once: the hot path (a customer's comment) needs only where the latest alert went.
_LATEST = (select(_alerts.c.id, _alerts.c.message_id)
           .where(_alerts.c.session_id == bindparam("k_session_id"))
           .order_by(_alerts.c.id.desc()).limit(1))


class Posted(NamedTuple):
    """An alert, and its message in the admin chat once posted."""

    id: int
    message_id: str | None


def latest_for(connection: Connection, session_id: int) -> Posted | None:
    """The dialogue's latest alert, for code already running synchronously."""
    row = connection.execute(_LATEST, {"k_session_id": session_id}).first()
    return Posted(row.id, row.message_id) if row is not None else None


def for_session(session: Session, session_id: int) -> Sequence[AlertRow]:
    """AlertRepository.for_session for code already running synchronously (UnitOfWork.step)."""
    return session.scalars(
        select(AlertRow).where(AlertRow.session_id == session_id).order_by(AlertRow.id)).all()


class AlertRepository(Repository):
    """Alerts for a human. They are raised only by UnitOfWork.record, with their answer."""

    async def get(self, alert_id: int) -> AlertRow:
        row = await self.session.get(AlertRow, alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id}")
        return row

    async def for_session(self, session_id: int) -> Sequence[AlertRow]:
        return await self.session.run_sync(for_session, session_id)

    async def set_message(self, alert_id: int, message_id: str) -> None:
        """Where the alert was posted in the admin chat: the customer's comment follows it."""
        await self.session.execute(
            update(AlertRow).where(AlertRow.id == alert_id).values(message_id=message_id))
