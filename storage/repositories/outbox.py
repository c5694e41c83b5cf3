"""The outbox as its runners (bot/services/effects.py) see it: a sink's events claimed in
order per key, then delivered, retried later or set aside. storage/outbox.py writes them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, bindparam, delete, func, or_, select, update

from storage.models import OutboxRow
from storage.outbox import WEBHOOK, Event, add_for
from storage.repositories.base import Repository

_outbox: Table = OutboxRow.__table__  # type: ignore[assignment]
# The first pending event of each key: only those may go, so a key's events go in order.
_PENDING = (_outbox.c.delivered_at.is_(None), _outbox.c.failed_at.is_(None))
_HEADS = (select(func.min(_outbox.c.id)).where(*_PENDING)
          .group_by(_outbox.c.key).scalar_subquery())
_EVENT = update(_outbox).where(_outbox.c.id == bindparam("k_id"))
_FAILED = _EVENT.values(attempts=_outbox.c.attempts + 1)


class Outbox(Repository):
    """Side effects waiting to be carried out, as their runners add, claim and settle them."""

    def add(self, sink: str, events: Sequence[Event], now: datetime) -> list[int]:
        """Queue `events` for `sink` in this transaction; their ids."""
        return add_for(self.session, sink, events, now)

    def claim(self, now: datetime, limit: int, lease: datetime, *, sink: str = WEBHOOK,
              ids: Collection[int] | None = None) -> list[Row[Any]]:
        """Take up to `limit` of the sink's events due now (of `ids` only, if given), in id
        order, each the first undelivered one of its key, and hold them until `lease`
        (their due_at meanwhile: a process that dies mid-send leaves them to be sent again
        then). SKIP LOCKED: two processes claiming at once never take the same event;
        SQLite serializes whole transactions instead."""
        due = (select(_outbox.c.id)
               .where(_outbox.c.sink == sink, _outbox.c.id.in_(_HEADS), *_PENDING,
                      _outbox.c.due_at <= now)
               .order_by(_outbox.c.id).limit(limit).with_for_update(skip_locked=True))
        if ids is not None:
            due = due.where(_outbox.c.id.in_(list(ids)))
        ids = list(self.connection.execute(due).scalars())
        if not ids:
            return []
        rows = self.connection.execute(
            update(_outbox).where(_outbox.c.id.in_(ids)).values(due_at=lease)
            .returning(_outbox.c.id, _outbox.c.event, _outbox.c.payload,
                       _outbox.c.created_at, _outbox.c.attempts)).all()
        return sorted(rows, key=lambda row: row.id)

    def delivered(self, event_id: int, now: datetime) -> None:
        self.connection.execute(_EVENT, {"k_id": event_id, "delivered_at": now,
                                         "last_error": None})

    def set_aside(self, event_id: int, error: str, now: datetime) -> None:
        """Never to be sent: no retry would mend it."""
        self.connection.execute(_EVENT, {"k_id": event_id, "failed_at": now,
                                         "last_error": error})

    def failed(self, event_id: int, error: str, due_at: datetime) -> None:
        """One more failed attempt; the next at `due_at`."""
        self.connection.execute(_FAILED, {"k_id": event_id, "last_error": error,
                                          "due_at": due_at})

    def prune(self, before: datetime) -> int:
        """Forget events delivered, or set aside, before `before`."""
        result = self.connection.execute(delete(_outbox).where(
            or_(_outbox.c.delivered_at < before, _outbox.c.failed_at < before)))
        return int(result.rowcount or 0)

    def pending(self) -> int:
        """How many events wait to be carried out, of every sink (Prometheus' gauge)."""
        return int(self.connection.execute(
            select(func.count()).select_from(_outbox).where(*_PENDING)).scalar_one())
