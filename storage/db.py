"""Engines and session factories. SQLite and PostgreSQL go through the same code."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.sqlite_adapter import AIOSQLITE, AdaptedConnection

SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=5000",  # first: switching to WAL may have to wait for another writer
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def create_engine(url: str) -> AsyncEngine:
    if make_url(url).drivername == "sqlite+aiosqlite":
        # One thread hop per statement instead of three or four: see storage/sqlite_adapter.
        engine = create_async_engine(url, module=AIOSQLITE)
    else:
        engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's legacy mode BEGINs only before DML, so SELECTs and DDL would run outside
    # the transaction; we switch it off and BEGIN ourselves (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    # writes fails with "database is locked" instead of waiting for busy_timeout.
    dbapi_connection = connection.connection.dbapi_connection
    if isinstance(dbapi_connection, AdaptedConnection):
        dbapi_connection.begin("BEGIN IMMEDIATE")  # sent with the first statement: one hop
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
