from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite

from storage.models import ChannelEventRow
from storage.repositories.base import Repository

_events: Table = ChannelEventRow.__table__  # type: ignore[assignment]


def _claim(insert: Any) -> postgresql.Insert | sqlite.Insert:
    return insert(_events).on_conflict_do_nothing().returning(  # type: ignore[no-any-return]
        _events.c.event_id)


_CLAIM = {"postgresql": _claim(postgresql.insert), "sqlite": _claim(sqlite.insert)}


class Events(Repository):
    """Channel events already applied: a channel that may deliver one twice (Telegram
    retries an update it has no answer for) claims it in the transaction that applies it."""

    def claim(self, channel: str, event_id: str, now: datetime) -> bool:
        """True the first time; False if a committed transaction claimed it before."""
        connection = self.connection
        return connection.execute(_CLAIM[connection.dialect.name], {
            "channel": channel, "event_id": event_id, "received_at": now}).first() is not None

    def prune(self, before: datetime) -> int:
        """Forget events received before `before` (a redelivery comes within a day)."""
        result = self.connection.execute(delete(_events).where(_events.c.received_at < before))
        return int(result.rowcount or 0)
