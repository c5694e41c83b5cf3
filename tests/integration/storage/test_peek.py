"""Database.peek: a keyed read on the event loop's own thread (SQLite file), the usual read
elsewhere. It sees what was committed, writes nothing, and never holds the event loop
while SQLite is busy: it hands the read to the driver's thread instead."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import PEEK_BUSY_MS, create_engine, session_factory, sync_reader
from storage.uow import Database, Store
from testkit.migrated import migrate

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def add(store: Store) -> int:
    return store.customers.add(now=NOW, external_id="crm-1").id


def external_id(store: Store) -> str | None:
    customer = store.customers.by_external_id("crm-1")
    return None if customer is None else customer.external_id


async def test_a_peek_sees_what_was_committed_and_writes_nothing(engine: AsyncEngine) -> None:
    db = Database(session_factory(engine))
    assert await db.peek(external_id) is None
    await db.write(add)
    assert await db.peek(external_id) == "crm-1"
    if engine.dialect.name == "sqlite":  # on its own connection, which cannot write
        with pytest.raises(DBAPIError, match=r"attempt to write a readonly database"):
            await db.peek(add)
    assert await db.read(external_id) == "crm-1"


async def test_a_peek_runs_on_the_event_loops_thread_only_for_a_sqlite_file(
        engine: AsyncEngine) -> None:
    on_loop = sync_reader(engine) is not None
    assert on_loop == (engine.dialect.name == "sqlite")
    memory = create_engine("sqlite+aiosqlite://")
    try:
        assert sync_reader(memory) is None  # a second connection would see another database
    finally:
        await memory.dispose()
    if on_loop:  # where `read` goes to the driver's thread, a peek does not
        db = Database(session_factory(engine))
        peeked = await db.peek(lambda store: threading.get_ident())
        read = await db.read(lambda store: threading.get_ident())
        assert (peeked, read != peeked) == (threading.get_ident(), True)


async def test_while_sqlite_is_busy_a_peek_waits_on_the_drivers_thread_not_the_loop(
        tmp_path: object) -> None:
    path = f"{tmp_path}/busy.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    engine = create_engine(url)
    await Database(session_factory(engine)).write(add)
    await engine.dispose()
    # A file in rollback-journal mode, which another process holds exclusively for 0.6 s
    # (WAL, our own mode, lets readers in beside a writer): no reader gets in meanwhile.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE customers SET first_name = 'x'")

    def let_go() -> None:
        holder.execute("COMMIT")
        holder.close()

    release = threading.Timer(0.6, let_go)
    engine = create_engine(url)
    db = Database(session_factory(engine))
    longest, ticking = 0.0, True

    async def tick() -> None:
        nonlocal longest
        while ticking:
            began = time.monotonic()
            await asyncio.sleep(0.005)
            longest = max(longest, time.monotonic() - began)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    release.start()
    try:
        started = time.monotonic()
        assert await db.peek(external_id) == "crm-1"  # once the holder let go
        assert time.monotonic() - started >= 0.4
    finally:
        ticking = False
        await ticker
        release.join()
        await engine.dispose()
    # The peek gave up after PEEK_BUSY_MS; the rest of the wait was on the driver's thread.
    assert longest < 0.005 + 5 * PEEK_BUSY_MS / 1000, longest
