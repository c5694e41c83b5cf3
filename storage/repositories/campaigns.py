"""Campaigns and their runs: a survey for a segment of customers on a cron schedule, and
each firing's progress through the customers (bot/services/campaigns.py decides)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.models import CampaignRow, CampaignRunRow, CustomerRow
from storage.repositories.base import Repository

_campaigns: Table = CampaignRow.__table__  # type: ignore[assignment]
_runs: Table = CampaignRunRow.__table__  # type: ignore[assignment]
_customers: Table = CustomerRow.__table__  # type: ignore[assignment]


def _start(insert: Any) -> Any:
    return insert(_runs).on_conflict_do_nothing(
        index_elements=["campaign_id", "scheduled_for"]).returning(_runs.c.id)


_START = {"postgresql": _start(postgresql.insert), "sqlite": _start(sqlite.insert)}


class Campaigns(Repository):

    def save(self, name: str, values: Mapping[str, Any], now: datetime) -> tuple[int, bool]:
        """Create or replace the campaign of this name; (its id, whether it is new)."""
        existing = self.connection.execute(
            select(_campaigns.c.id).where(_campaigns.c.name == name)).scalar()
        if existing is None:
            created = self.connection.execute(
                _campaigns.insert().returning(_campaigns.c.id),
                {"name": name, "created_at": now, **values}).scalar_one()
            return int(created), True
        self.connection.execute(update(_campaigns).where(_campaigns.c.id == existing)
                                .values(**values))
        return int(existing), False

    def all(self) -> Sequence[Any]:
        """Every campaign's row, by id."""
        return self.connection.execute(select(_campaigns).order_by(_campaigns.c.id)).all()

    def get(self, campaign_id: int) -> Any:
        return self.connection.execute(
            select(_campaigns).where(_campaigns.c.id == campaign_id)).one()

    def start_run(self, campaign_id: int, fired: datetime, now: datetime) -> int | None:
        """The run of the campaign for the minute `fired`; None if it was started before
        (by this process or another)."""
        connection = self.connection
        return connection.execute(_START[connection.dialect.name], {
            "campaign_id": campaign_id, "scheduled_for": fired, "status": "running",
            "cursor": 0, "scheduled": 0, "suppressed": 0, "started_at": now,
            "updated_at": now}).scalar()

    def lock_run(self, campaign_id: int, fired: datetime) -> Any:
        """The run's row, FOR UPDATE: two processes resuming one run take its batches in
        turn."""
        return self.connection.execute(select(_runs).where(
            _runs.c.campaign_id == campaign_id, _runs.c.scheduled_for == fired)
            .with_for_update()).one()

    def customers_after(self, cursor: int, limit: int) -> Sequence[Any]:
        """The next `limit` customers by id after `cursor`, but the erased: id, opted_out_at,
        timezone, locale, attributes."""
        return self.connection.execute(
            select(_customers.c.id, _customers.c.opted_out_at, _customers.c.timezone,
                   _customers.c.locale, _customers.c.attributes)
            .where(_customers.c.id > cursor, _customers.c.erased_at.is_(None))
            .order_by(_customers.c.id).limit(limit)).all()

    def update_run(self, run_id: int, values: Mapping[str, Any]) -> None:
        self.connection.execute(update(_runs).where(_runs.c.id == run_id).values(**values))
