"""What the health check and Prometheus' gauges read: the database answers, and how many
deliveries and alerts are in each status (the outbox's waiting events: Outbox.pending)."""

from __future__ import annotations

from sqlalchemy import func, select, text

from storage.models import AlertRow, DeliveryRow
from storage.repositories.base import Repository

_BY_STATUS = {name: select(row.status, func.count()).group_by(row.status)
              for name, row in (("deliveries", DeliveryRow), ("alerts", AlertRow))}


class Health(Repository):
    def ping(self) -> None:
        self.connection.execute(text("SELECT 1"))

    def by_status(self) -> dict[str, dict[str, int]]:
        """Deliveries and alerts, by status."""
        return {name: {status: count for status, count in self.connection.execute(query)}
                for name, query in _BY_STATUS.items()}
