from __future__ import annotations

import asyncio
from pathlib import Path

from storage.db import create_engine
from storage.uow import UnitOfWork
from tests.integration.storage.support import NOW, Factory


async def test_sqlite_connections_are_set_up(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}")
    try:
        async with engine.connect() as connection:
            values = [(await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                      for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")]
    finally:
        await engine.dispose()
    assert values == ["wal", 1, 5000, 1]  # synchronous 1 = NORMAL


async def test_writers_that_read_first_wait_for_each_other(factory: Factory) -> None:
    """A deferred SQLite transaction that read before another committed cannot write; it
    fails at once with "database is locked". BEGIN IMMEDIATE makes it wait instead."""

    async def read_then_write(actor: str) -> None:
        async with UnitOfWork(factory) as uow:
            await uow.customers.by_external_id(actor)
            await asyncio.sleep(0.05)
            await uow.audit.add(actor, "test", "db", {}, now=NOW)
            await uow.commit()

    await asyncio.gather(*(read_then_write(f"writer-{i}") for i in range(3)))
