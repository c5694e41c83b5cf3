"""After an erasure (Customers.erase) is committed: take what it removed out of the
database's files as far as the backend allows (storage.db.scrub)."""

from __future__ import annotations

from storage import db
from storage.models import (
    AlertRow,
    AnswerRow,
    CustomerRow,
    DeliveryRow,
    DialogueRow,
    IdentityRow,
    OutboxRow,
    TriggerRow,
)
from storage.uow import Database

# What Customers.erase changes or deletes rows of.
ERASED_TABLES = tuple(str(row.__tablename__) for row in (
    CustomerRow, IdentityRow, AnswerRow, AlertRow, DialogueRow, TriggerRow, DeliveryRow,
    OutboxRow))


async def scrub(database: Database) -> bool | None:
    """storage.db.scrub of ERASED_TABLES: on SQLite whether the files hold nothing erased
    any more; None on PostgreSQL (they cannot be said to be clean)."""
    assert database.engine is not None
    return await db.scrub(database.engine, ERASED_TABLES)
