from __future__ import annotations

from storage.errors import NotFound
from storage.models import AlertRow
from storage.repositories.base import Repository


class AlertRepository(Repository):
    """Alerts for a human. They are raised only by UnitOfWork.record, with their answer."""

    async def get(self, alert_id: int) -> AlertRow:
        row = await self.session.get(AlertRow, alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id}")
        return row
