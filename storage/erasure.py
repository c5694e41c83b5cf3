"""After an erasure (Customers.erase) is committed: take what it removed out of the
database's files as far as the backend allows (storage.db.scrub)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

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
    engine = database._factory.kw["bind"]  # storage's own: no engine leaves storage
    assert isinstance(engine, AsyncEngine)
    return await db.scrub(engine, ERASED_TABLES)
