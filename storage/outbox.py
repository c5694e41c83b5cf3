"""The outbox: events for OUTBOUND_WEBHOOK_URL written in the transaction that causes them
(an answer, a completed dialogue, an alert raised or resolved), so none is lost and none
is told of a change that rolled back. bot/webhooks.py sends them later."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from storage.models import OutboxRow

# Session.info key, set by storage.db.session_factory(outbox=True): with no webhook
# configured, nothing is written (a reply's transaction stays as short as it was).
ENABLED = "otklik.outbox"

_outbox: Table = OutboxRow.__table__  # type: ignore[assignment]
INSERT = insert(_outbox)

# (event, key, payload): the key orders delivery, e.g. "customer:42".
Event = tuple[str, str, Mapping[str, Any]]


def add(session: Session, events: Iterable[Event], now: datetime) -> None:
    """Queue `events` in the session's transaction, when the outbox is enabled."""
    if not session.info.get(ENABLED):
        return
    rows = [{"event": event, "key": key, "payload": dict(payload), "created_at": now,
             "due_at": now, "attempts": 0} for event, key, payload in events]
    if rows:
        session.connection().execute(INSERT, rows)
