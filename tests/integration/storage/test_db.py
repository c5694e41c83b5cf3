from __future__ import annotations

import asyncio
from pathlib import Path

from storage.db import create_engine
from storage.uow import Store
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
        async with factory() as session:
            await session.run_sync(lambda sync: Store(sync).customers.by_external_id(actor))
            await asyncio.sleep(0.05)
            await session.run_sync(lambda sync: Store(sync).audit.add(
                actor, "test", "db", {}, now=NOW))
            await session.commit()

    await asyncio.gather(*(read_then_write(f"writer-{i}") for i in range(3)))


async def test_sqlite_units_of_work_queue_for_one_connection(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}")
    connections: set[int] = set()

    async def unit(n: int) -> None:
        async with engine.begin() as connection:
            connections.add(id((await connection.get_raw_connection()).driver_connection))
            await connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
            await asyncio.sleep(0.005)
            await connection.exec_driver_sql("INSERT INTO t VALUES (?)", (n,))

    try:
        await asyncio.gather(*(unit(n) for n in range(20)))
        async with engine.connect() as connection:
            count = (await connection.exec_driver_sql("SELECT count(*) FROM t")).scalar()
    finally:
        await engine.dispose()
    assert (len(connections), count) == (1, 20)


async def test_an_sqlite_database_in_memory_works_too() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        async with engine.begin() as connection:
            assert (await connection.exec_driver_sql("SELECT 1")).scalar() == 1
    finally:
        await engine.dispose()
