"""Test databases ready fast: the migrations run once per process and backend, and every
empty database then gets their result (a quarter of a second saved per test); the example
surveys are read and validated once per process.

Alembic decides what to do from what it finds, so it migrates every empty database alike:
on SQLite an empty database gets a copy of the file the migrations built, on PostgreSQL
the statements they sent, sent again in one transaction. A database that already has
tables goes through storage.migrate as usual. Tests of the migrations themselves call
storage.migrate directly."""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from contextlib import closing
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, event, inspect, make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.examples import EXAMPLES
from bot.services.scripts import Loaded, read_scripts, store_scripts
from conversations.script import Script
from storage.db import create_engine
from storage.migrate import upgrade_async
from storage.uow import Database

SURVEYS = EXAMPLES

_sqlite: list[tempfile.TemporaryDirectory[str]] = []  # holds migrated.db, built once
_postgres: list[tuple[str, Any, bool]] = []  # what the migrations sent to an empty one


async def migrate(url: str) -> None:
    """storage.migrate.upgrade_async(url), faster on an empty database."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            backend = connection.dialect.name
            empty = not await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            if empty and backend == "postgresql" and _postgres:
                # On asyncpg's connection, in the transaction SQLAlchemy began: a script
                # without parameters takes one round trip, not two a statement.
                driver: Any = (await connection.get_raw_connection()).driver_connection
                for statement, parameters, many in _postgres:
                    if many:
                        await driver.executemany(statement, parameters)
                    else:
                        await driver.execute(statement, *parameters)
                await connection.commit()
                return
    finally:
        await engine.dispose()
    if not empty:
        await upgrade_async(url)
    elif backend == "sqlite":
        await _copy_migrated(make_url(url).database or "")
    else:
        _postgres[:] = await _recorded(url)


async def _copy_migrated(path: str) -> None:
    if not _sqlite:
        # Removed with the process's other temporary files when it ends.
        _sqlite.append(tempfile.TemporaryDirectory(prefix="otklik-migrated-"))
        await upgrade_async(f"sqlite+aiosqlite:///{_sqlite[0].name}/migrated.db")
    # The backup API copies a consistent database, whatever is still in its WAL.
    with closing(sqlite3.connect(f"{_sqlite[0].name}/migrated.db")) as source, \
            closing(sqlite3.connect(path)) as target:
        source.backup(target)


async def _recorded(url: str) -> list[tuple[str, Any, bool]]:
    """Migrate `url`; every statement sent to it, with its parameters and whether it was
    an executemany, consecutive ones without parameters joined into one script."""
    database = make_url(url).database
    sent: list[tuple[str, Any, bool]] = []

    def record(connection: Any, _cursor: Any, statement: str, parameters: Any,
               _context: Any, many: bool) -> None:
        if connection.engine.url.database != database:
            return
        if not parameters and sent and not sent[-1][1]:
            statement = f"{sent.pop()[0]};\n{statement}"
        sent.append((statement, parameters, many))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        await upgrade_async(url)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return sent


@functools.cache
def _examples() -> tuple[tuple[str, Script, str], ...]:
    # Scripts are frozen models: the product, too, shares one between requests.
    return tuple((str(path), script, source) for path, script, source in read_scripts([SURVEYS]))


async def load_examples(factory: async_sessionmaker[AsyncSession], now: datetime
                        ) -> list[Loaded]:
    """load_scripts(factory, [SURVEYS], actor="tests", now=now), parsing only once."""
    return await store_scripts(Database(factory), _examples(), actor="tests", now=now)
