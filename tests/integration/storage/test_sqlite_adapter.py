"""storage.sqlite_adapter: fewer thread hops, and the same results and transactions as
SQLAlchemy's own aiosqlite adapter. SQLite only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.db import create_engine, session_factory
from storage.sqlite_adapter import AdaptedConnection
from storage.uow import Database
from testkit.migrated import migrate
from tests.integration.storage.support import begin, csat_script, reply, store


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'adapter.db'}"
    await migrate(url)
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    yield engine
    await engine.dispose()


async def _in_transaction(connection: AsyncConnection) -> bool:
    """Asked of sqlite3 itself, on its thread."""
    driver: Any = (await connection.get_raw_connection()).driver_connection
    return bool(await driver._execute(lambda: driver._conn.in_transaction))


async def test_a_turn_read_recorded_and_committed_costs_one_hop(
        engine: AsyncEngine, hops: list[str]) -> None:
    factory = session_factory(engine)
    script = csat_script()
    await store(factory, script)
    dialogue = await begin(factory, script)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2].split()[0]))
    hops.clear()

    await reply(factory, script, dialogue.id, "4")

    # Database.write: the read, the record's statements (the answer, its rollup, its
    # context's rollup: the dialogue has an agent) and the commit, all in one hop; no
    # rollback when the connection goes back.
    assert statements == ["SELECT", "INSERT", "INSERT", "INSERT", "UPDATE"]
    assert hops == ["on_worker"]


async def test_a_read_costs_one_hop_and_leaves_no_transaction_open(
        engine: AsyncEngine, hops: list[str]) -> None:
    factory = session_factory(engine)
    script = csat_script()
    await store(factory, script)
    hops.clear()

    version = await Database(factory).read(
        lambda store: store.scripts.active_version(script.id))

    assert version == 1
    # The read and the end of its transaction in one trip: a page shown again costs one.
    assert hops == ["on_worker"]
    async with engine.connect() as connection:
        assert not await _in_transaction(connection)


async def test_a_transaction_without_statements_costs_nothing(
        engine: AsyncEngine, hops: list[str]) -> None:
    factory = session_factory(engine)
    async with engine.begin():
        pass
    async with factory() as session:
        await session.commit()
    async with factory():
        pass

    assert hops == []


async def test_results_are_those_of_sqlite3(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        many = await connection.execute(text("INSERT INTO t (n) VALUES (:n)"),
                                        [{"n": 1}, {"n": 2}, {"n": 3}])
        one = await connection.execute(text("INSERT INTO t (n) VALUES (4)"))
        returned = await connection.execute(text("INSERT INTO t (n) VALUES (5) RETURNING id, n"))
        updated = await connection.execute(text("UPDATE t SET n = n * 10 WHERE n > 2"))
        rows = await connection.execute(text("SELECT id, n FROM t ORDER BY id"))
        empty = await connection.execute(text("SELECT n AS m FROM t WHERE n < 0"))
        deleted = await connection.execute(text("DELETE FROM t WHERE n = 10 RETURNING n"))

        assert many.rowcount == 3
        assert one.lastrowid == 4
        assert returned.all() == [(5, 5)]
        assert updated.rowcount == 3
        assert rows.all() == [(1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]
        assert (list(empty.keys()), empty.all()) == (["m"], [])
        assert deleted.all() == []
        assert deleted.rowcount == 0


async def test_streaming_runs_in_the_transaction(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        result = await connection.stream(text("SELECT 1 UNION ALL SELECT 2"))
        assert [row async for row in result.scalars()] == [1, 2]
        assert await _in_transaction(connection)


async def test_a_failed_statement_leaves_no_transaction_behind(engine: AsyncEngine) -> None:
    # The first statement fails after the BEGIN sent with it opened the transaction.
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t (id, n) VALUES (1, 1), (1, 2)"))

    async with engine.begin() as connection:  # the same pooled connection, usable again
        await connection.execute(text("INSERT INTO t (n) VALUES (3)"))
    async with engine.connect() as connection:
        assert not await _in_transaction(connection)
        assert (await connection.execute(text("SELECT n FROM t"))).scalars().all() == [3]


async def test_a_statement_cancelled_midway_is_rolled_back(engine: AsyncEngine) -> None:
    """Cancelled, the statement still runs to its end on aiosqlite's thread, in the
    transaction it began."""
    started, release = threading.Event(), threading.Event()

    def slow() -> int:  # runs on aiosqlite's thread, inside the INSERT
        started.set()
        release.wait(5)
        return 1

    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.dbapi_connection, AdaptedConnection)
        await raw.driver_connection.create_function("slow", 0, slow)

    task = asyncio.create_task(_write(engine, text("INSERT INTO t (n) SELECT slow()")))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with engine.connect() as connection:
        assert not await _in_transaction(connection)
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_work_on_the_worker_cancelled_midway_ends_first_and_is_rolled_back(
        engine: AsyncEngine) -> None:
    """A task cancelled while its function runs on aiosqlite's thread gets CancelledError
    only once the function has ended: until then it uses the task's connection."""
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def work(connection: Connection) -> None:  # on aiosqlite's thread
        connection.execute(text("INSERT INTO t (n) VALUES (1)"))
        started.set()
        release.wait(5)
        connection.execute(text("INSERT INTO t (n) VALUES (2)"))
        ended.set()

    async def unit() -> None:
        async with engine.begin() as connection:
            raw = (await connection.get_raw_connection()).dbapi_connection
            assert isinstance(raw, AdaptedConnection)
            await raw.run_on_worker(work, connection.sync_connection)

    task = asyncio.create_task(unit())
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()

    async with engine.connect() as connection:
        assert not await _in_transaction(connection)
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_work_on_the_worker_that_fails_leaves_no_transaction_behind(
        engine: AsyncEngine) -> None:
    def work(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t (n) VALUES (1)"))
        connection.execute(text("INSERT INTO t (id, n) VALUES (1, 2)"))

    async def unit() -> None:
        async with engine.begin() as connection:
            raw = (await connection.get_raw_connection()).dbapi_connection
            assert isinstance(raw, AdaptedConnection)
            await raw.run_on_worker(work, connection.sync_connection)

    with pytest.raises(IntegrityError):
        await unit()

    async with engine.connect() as connection:
        assert not await _in_transaction(connection)
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def _write(engine: AsyncEngine, statement: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(statement)


async def test_a_read_takes_no_write_lock(engine: AsyncEngine) -> None:
    """Database.read begins deferred: it reads while another process (here another engine
    on the file) holds the write lock, where Database.write, which begins IMMEDIATE, waits
    for it."""
    other = create_engine(str(engine.url))
    try:
        factory = session_factory(other)
        async with engine.connect() as writer:  # begins IMMEDIATE with its first statement
            await writer.exec_driver_sql("INSERT INTO t (n) VALUES (1)")
            seen = await asyncio.wait_for(Database(factory).read(
                lambda store: store.events.connection.execute(
                    text("SELECT count(*) FROM t")).scalar_one()), timeout=1)
            assert seen == 0  # the writer's row is not committed yet
            # Released, not cancelled: a cancelled wait would last SQLite's busy_timeout.
            waiting = asyncio.create_task(Database(factory).write(
                lambda store: store.events.connection.execute(
                    text("SELECT count(*) FROM t")).scalar_one()))
            assert not (await asyncio.wait({waiting}, timeout=0.5))[0]
            await writer.rollback()
            assert await waiting == 0
    finally:
        await other.dispose()
