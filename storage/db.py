"""Engines and session factories. SQLite and PostgreSQL go through the same code."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    URL,
    AsyncAdaptedQueuePool,
    Connection,
    Engine,
    event,
    make_url,
)
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.outbox import ENABLED as outbox_enabled
from storage.sqlite_adapter import AIOSQLITE, AdaptedConnection

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_I = TypeVar("_I")
BUSY_TIMEOUT_MS = 5000
SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",  # first: switching to WAL may wait for a writer
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
    # Freed space (a deleted row, an erased text, an index entry) is overwritten with zeros,
    # so erasure leaves nothing in the file; some builds of SQLite do this by default, not all.
    "PRAGMA secure_delete=ON",
)


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    options: dict[str, Any] = {}
    if parsed.drivername == "sqlite+aiosqlite":
        # One thread hop per statement instead of three or four: see storage/sqlite_adapter.
        options["module"] = AIOSQLITE
    if parsed.get_backend_name() == "sqlite" and _is_file(parsed):
        # Every transaction takes SQLite's one write lock (BEGIN IMMEDIATE), so more
        # connections would only wait for it in SQLite's busy handler, which sleeps up to
        # 100 ms at a time: at ~300 answers/s from 50 chats, p99 was 430 ms with the default
        # 5 + 10 connections, 28 ms with one. Units of work wait in the pool's queue instead,
        # woken when the connection is free, for as long as busy_timeout would have let them.
        options |= {"poolclass": AsyncAdaptedQueuePool, "pool_size": 1, "max_overflow": 0,
                    "pool_timeout": BUSY_TIMEOUT_MS / 1000}
    # hide_parameters: a failed statement's message must not carry customer data into logs.
    engine = create_async_engine(parsed, hide_parameters=True, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


# A peek (Database.peek) waits this long at most for SQLite's lock before it hands the read
# to the driver's thread instead: the event loop must not sleep in SQLite's busy handler.
PEEK_BUSY_MS = 20
_readers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def sync_reader(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine on the same SQLite file, for reads run on the event loop's own
    thread (Database.peek): one connection, reading only. None where there is none to have:
    not SQLite, or a database in memory (a second connection would see another one)."""
    if engine.dialect.name != "sqlite" or not _is_file(engine.url):
        return None
    reader = _readers.get(engine.sync_engine)
    if reader is None:
        reader = create_sync_engine(engine.url.set(drivername="sqlite"), hide_parameters=True,
                                    pool_size=1, max_overflow=0)
        event.listen(reader, "connect", _reader_connect)
        event.listen(reader, "begin", _sqlite_begin)
        event.listen(engine.sync_engine, "engine_disposed", lambda _: reader.dispose())
        _readers[engine.sync_engine] = reader
    return reader


def _reader_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we BEGIN ourselves, as _sqlite_connect says
    for pragma in (f"PRAGMA busy_timeout={PEEK_BUSY_MS}", "PRAGMA query_only=ON"):
        dbapi_connection.execute(pragma)
    dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)


async def scrub(engine: AsyncEngine, tables: Sequence[str]) -> bool | None:
    """After rows of `tables` were erased and committed, take what they held out of the
    database's files as far as the backend allows.

    SQLite (secure_delete has zeroed the freed space): a TRUNCATE checkpoint moves every
    page of the write-ahead log into the database file and empties the log, whose older
    frames still hold the erased rows (a plain checkpoint leaves them there). True once
    done; False when another process's reader or writer kept it from finishing within
    SCRUB_WAIT_MS (logged; erasing again tries again: SQLite's own checkpoints do not
    empty the log).

    PostgreSQL: VACUUM of `tables`, which frees the dead row versions the erasure left for
    reuse; their bytes can stay on disk until reused, in the WAL until it is recycled,
    and in archives and backups (README). None: the files cannot be said to be clean.
    False if VACUUM could not run (logged)."""
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            return await _checkpoint(connection)
        names = ", ".join(engine.dialect.identifier_preparer.quote(t) for t in tables)
        try:
            # VACUUM cannot run inside a transaction block.
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql(f"VACUUM {names}")
        except DBAPIError as error:
            log.warning("VACUUM after an erasure failed (%s)", type(error.orig).__name__)
            return False
        return None


SCRUB_WAIT_MS = 1000  # the pool's one connection is held meanwhile: every unit of work waits


async def _checkpoint(connection: AsyncConnection) -> bool:
    # On the driver's connection, outside any transaction: SQLAlchemy would BEGIN first (a
    # checkpoint cannot empty the log under a transaction), and its AUTOCOMMIT level would
    # leave the connection in sqlite3's legacy transaction mode when it is reset.
    driver: Any = (await connection.get_raw_connection()).driver_connection
    await driver.execute_fetchall(f"PRAGMA busy_timeout={SCRUB_WAIT_MS}")
    try:
        [(busy, _, _)] = await driver.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await driver.execute_fetchall(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if busy:
        log.warning("the write-ahead log could not be emptied after an erasure: another "
                    "process was reading or writing")
    return not busy


def _is_file(url: URL) -> bool:
    memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    return not memory


# Execution option of a connection that will only read (Database.read).
READ_ONLY = "otklik_read_only"
# Session.info key: a callable given the answers each recorded turn inserted (metrics).
OBSERVE = "otklik.observe"
# Session.info key: how many alerts anonymous answers may raise per survey in an hour.
ANONYMOUS_ALERTS = "otklik.anonymous_alerts"
ANONYMOUS_ALERTS_PER_HOUR = 10


def session_factory(engine: AsyncEngine, *, outbox: bool = False,
                    observe: Callable[[Sequence[Any]], None] | None = None,
                    anonymous_alerts: int = ANONYMOUS_ALERTS_PER_HOUR
                    ) -> async_sessionmaker[AsyncSession]:
    """`outbox`: units of work queue webhook events (storage.outbox.add writes them).
    `observe`: told of every answer recorded (Dialogues.record), on the thread that
    recorded it. `anonymous_alerts`: the alerts anonymous answers may raise per survey in
    an hour; beyond, they are stored without one."""
    return async_sessionmaker(engine, expire_on_commit=False,
                              info={outbox_enabled: outbox, OBSERVE: observe,
                                    ANONYMOUS_ALERTS: anonymous_alerts})


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's legacy mode BEGINs only before DML, so SELECTs and DDL would run outside
    # the transaction; we switch it off and BEGIN ourselves (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()
    # SQLite's lower() and LIKE fold ASCII only; a search in Russian texts needs Unicode.
    dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)


def _casefold(value: object) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    # writes fails with "database is locked" instead of waiting for busy_timeout. A unit
    # that only reads (READ_ONLY) begins deferred: in WAL it then never waits for a writer
    # or makes one wait, and readers no longer queue behind each other for the lock.
    begin = "BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
    dbapi_connection = connection.connection.dbapi_connection
    if isinstance(dbapi_connection, AdaptedConnection):
        dbapi_connection.begin(begin)  # sent with the first statement: one hop
    else:
        connection.exec_driver_sql(begin)


class Outage(StrEnum):
    """What a failed statement can say about the database itself (see `outage`)."""

    UNAVAILABLE = "database_unavailable"  # locked, unreachable, connection lost: it passes
    FULL = "storage_full"  # no space left for the write: someone must make some


# SQLSTATEs that pass by themselves: connection exceptions (class 08), the server shutting
# down or starting up, too many connections. 53100 is a full disk.
_PG_UNAVAILABLE = ("08", "57P01", "57P02", "57P03", "53300")
_PG_FULL = "53100"


class Unavailable(ConnectionError):
    """Another store the product needs (Redis, for the limits) is out of reach for now: an
    outage like the database's own (see `outage`)."""


def outage(error: BaseException) -> Outage | None:
    """Whether `error` says the database is out of reach for now (SQLite's write lock held
    past busy_timeout, no pooled connection within pool_timeout, a server refusing or
    dropping connections) or out of space. None for anything else (a broken constraint, a
    bug), which waiting would not mend."""
    if isinstance(error, PoolTimeout | Unavailable):
        return Outage.UNAVAILABLE
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return Outage.UNAVAILABLE
        if error.orig is None:
            return None
        error = error.orig  # the driver's own
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF  # extended codes keep the primary one in the low byte
        return (Outage.UNAVAILABLE if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                else Outage.FULL if primary == sqlite3.SQLITE_FULL else None)
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str):
        return (Outage.FULL if state == _PG_FULL
                else Outage.UNAVAILABLE if state.startswith(_PG_UNAVAILABLE) else None)
    if isinstance(error, OSError) and _through_sqlalchemy(error):
        # asyncpg fails to connect with the socket's own error (refused, unreachable, timed
        # out), which SQLAlchemy passes on unwrapped. Any other OSError (SMTP, Telegram) is
        # not the database's.
        return Outage.UNAVAILABLE
    return None


def _through_sqlalchemy(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None:
        if str(frame.tb_frame.f_globals.get("__name__", "")).startswith("sqlalchemy."):
            return True
        frame = frame.tb_next
    return False


async def patiently(call: Callable[[], Awaitable[_T]], *, what: str,
                    patience: float = 30.0) -> _T:
    """`call()`, made again with backoff (0.5 s, doubling up to 5 s) while it fails on an
    unavailable database, for up to `patience` seconds; then its error. Only for a call
    that leaves nothing behind when it fails, as a unit of work that rolled back. `what`
    names it in the one warning logged (no personal data)."""
    loop = asyncio.get_running_loop()
    deadline, delay, failed = loop.time() + patience, 0.5, False
    while True:
        try:
            result = await call()
        except Exception as error:
            if outage(error) is not Outage.UNAVAILABLE or loop.time() + delay > deadline:
                raise
            if not failed:
                log.warning("%s waits for the database (%s)", what, type(error).__name__)
                failed = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if failed:
            log.info("%s went through once the database was back", what)
        return result



def each_alone(connection: Connection, items: Sequence[_I],
               write: Callable[[Sequence[_I]], list[_T]],
               poisoned: Callable[[_I, Exception], None]) -> list[_T]:
    """`write(items)` in a savepoint; if it raises, `write([item])` for each item in a
    savepoint of its own, and `poisoned(item, error)` for an item that raises again: one
    item that cannot be written (a poison) never takes the rest of its batch down with it,
    which would leave them all to be done again, and again. The results of the writes
    that held, in order. `poisoned` must settle its item for good (and say why).

    An error that says the database itself is away or full (`outage`) is no poison: it is
    raised at once, for the whole unit to be tried again later."""
    try:
        with connection.begin_nested():
            return write(items)
    except Exception as error:
        if outage(error) is not None:
            raise
    results: list[_T] = []
    for item in items:
        try:
            with connection.begin_nested():
                results.extend(write([item]))
        except Exception as error:
            if outage(error) is not None:
                raise
            poisoned(item, error)
    return results
