from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select

from storage.models import AuditRow
from storage.repositories.base import Repository

_audit: Table = AuditRow.__table__  # type: ignore[assignment]
_ADD = insert(_audit).returning(_audit.c.id)


class Audit(Repository):
    """Who did what to which target, and when: written in the transaction of the change
    itself, so an action and its audit row commit or roll back together."""

    def add(self, actor: str, action: str, target: str, details: Mapping[str, Any], *,
            now: datetime) -> int:
        """The new row's id."""
        return int(self.connection.execute(_ADD, {
            "actor": actor, "action": action, "target": target, "details": dict(details),
            "at": now}).scalar_one())

    def page(self, *, action: str | None = None, target: str | None = None,
             before: int | None = None, limit: int = 100) -> Sequence[AuditRow]:
        """Newest first; page with `before` = the last id of the page before."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if action is not None:
            query = query.where(AuditRow.action == action)
        if target is not None:
            query = query.where(AuditRow.target == target)
        if before is not None:
            query = query.where(AuditRow.id < before)
        return self.session.scalars(query).all()
