"""storage.sqlite_writer through Database.write: writes that wait together go to SQLite's
thread in one hop, each in a transaction of its own. SQLite only."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db
from storage.db import Outage, create_engine, outage, session_factory
from storage.uow import Database, Store

Unit = Callable[[Store], int]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}")
    async with engine.begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    yield engine
    await engine.dispose()


def insert(n: int, *, then_fail: bool = False) -> Unit:
    def unit(store: Store) -> int:
        connection = store.events.connection  # any repository's: the transaction's
        connection.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
        if then_fail:
            connection.execute(text("INSERT INTO t (id, n) VALUES (1, 0), (1, 0)"))
        return n
    return unit


async def apply(engine: AsyncEngine, unit: Unit) -> int:
    return await Database(session_factory(engine)).write(unit)


async def stored(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT n FROM t ORDER BY id"))).scalars())


async def in_transaction(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        driver: Any = (await connection.get_raw_connection()).driver_connection
        return bool(await driver._execute(lambda: driver._conn.in_transaction))


async def test_units_that_wait_together_take_one_hop(engine: AsyncEngine,
                                                     hops: list[str]) -> None:
    results = await asyncio.gather(*(apply(engine, insert(n)) for n in range(1, 6)))

    assert results == [1, 2, 3, 4, 5]
    assert hops == ["on_worker"]
    assert await stored(engine) == [1, 2, 3, 4, 5]


async def test_a_unit_that_fails_is_rolled_back_alone(engine: AsyncEngine) -> None:
    results = await asyncio.gather(apply(engine, insert(1)),
                                   apply(engine, insert(2, then_fail=True)),
                                   apply(engine, insert(3)), return_exceptions=True)

    assert results[0] == 1
    assert isinstance(results[1], IntegrityError)
    assert results[2] == 3
    assert await stored(engine) == [1, 3]
    assert not await in_transaction(engine)


async def test_a_unit_cancelled_before_its_turn_never_runs(engine: AsyncEngine) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(store: Store) -> int:
        started.set()
        release.wait(5)
        return insert(1)(store)

    first = asyncio.create_task(apply(engine, slow))
    assert await asyncio.to_thread(started.wait, 5)
    second = asyncio.create_task(apply(engine, insert(2)))
    await asyncio.sleep(0.01)  # queued behind the first
    second.cancel()
    release.set()

    assert await first == 1
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await stored(engine) == [1]


async def test_a_unit_cancelled_midway_ends_first(engine: AsyncEngine) -> None:
    """Its caller gets CancelledError only once the unit has ended (and committed)."""
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def slow(store: Store) -> int:
        started.set()
        release.wait(5)
        ended.set()
        return insert(1)(store)

    task = asyncio.create_task(apply(engine, slow))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()
    release.set()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()
    assert await stored(engine) == [1]
    assert not await in_transaction(engine)


async def test_units_behind_one_that_found_the_lock_taken_fail_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the write lock: the first unit waits busy_timeout for it and
    fails; the nine queued behind it fail with it, instead of waiting as long each."""
    monkeypatch.setattr(db, "SQLITE_PRAGMAS", ("PRAGMA busy_timeout=300",
                                               *db.SQLITE_PRAGMAS[1:]))
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        results = await asyncio.gather(*(apply(engine, insert(n)) for n in range(10)),
                                       return_exceptions=True)
        took = loop.time() - began
        lock.rollback()
        assert await apply(engine, insert(10)) == 10  # the lock gone, writes go through
    finally:
        lock.close()
        await engine.dispose()
    assert all(isinstance(r, BaseException) and outage(r) is Outage.UNAVAILABLE
               for r in results), results
    assert took < 1.5  # one busy_timeout, not ten
