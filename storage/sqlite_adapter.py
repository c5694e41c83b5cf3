"""SQLAlchemy's aiosqlite adapter with one thread hop per statement instead of three or four.

aiosqlite runs every sqlite3 call on its connection's own thread and hands the result back
to the event loop. Such a hop costs 30-80 us of CPU on our 2-core VMs, more than SQLite takes
to run one of our statements, and SQLAlchemy's adapter (sqlalchemy.dialects.sqlite.aiosqlite,
2.1) makes one each to create a cursor, execute, fetch the rows and close the cursor. Here:

- a statement's cursor lives and dies in one function on aiosqlite's thread, which returns
  the rows with the cursor's description, rowcount and lastrowid;
- `AdaptedConnection.begin("BEGIN IMMEDIATE")` (storage.db's "begin" listener) sends the
  BEGIN in the hop of the transaction's first statement, or not at all if none comes;
- a rollback of a connection that is in no transaction costs no hop (SQLAlchemy rolls back
  every connection returned to its pool, after a commit too).

- `AdaptedConnection.run_on_worker(fn)` runs a synchronous function that executes several
  statements (Database.write's and read's function, e.g. one that calls Dialogues.record)
  on aiosqlite's thread, all in one hop, and may end with the DBAPI connection's commit
  (or rollback): SQLAlchemy's own commit afterwards then costs no hop.

A write that reads a dialogue, records a turn and commits thus makes 1 hop, not 19.
Everything else is SQLAlchemy's and aiosqlite's: dialect, pool, types, error mapping, the
worker thread, the server-side (streaming) cursor. It relies on two internals, aiosqlite's
`Connection._execute(fn, *args)` (run `fn` on the connection's thread, await its result) and
the adapter classes subclassed here; tests/integration/storage/test_sqlite_adapter.py pins
what they must keep doing. Used via `create_async_engine(url, module=AIOSQLITE)`.

Code that runs SQL on the aiosqlite connection directly (driver_connection) must leave no
transaction open: whether a rollback is needed is known only from statements run here.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    AsyncAdapt_aiosqlite_ss_cursor,
)
from sqlalchemy.util import EMPTY_DICT

# What a hop returns: rows, description, rowcount, lastrowid, and whether the connection is
# in a transaction afterwards.
_Outcome = tuple[list[Any], Any, int, int | None, bool]
_T = TypeVar("_T")


def _statement(connection: sqlite3.Connection, begin: str | None, operation: str,
               parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread: a cursor's whole life, which the stock adapter spreads over
    four hops, after the transaction's BEGIN if that is still to be sent."""
    if begin is not None:
        connection.execute(begin)
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return (rows, cursor.description, cursor.rowcount, cursor.lastrowid,
                connection.in_transaction)
    finally:
        cursor.close()


def _nothing() -> None:
    return None


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose sqlite3 cursor exists only within each hop."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")
    _awaitable_cursor_close = False  # nothing left to close on the event loop's side

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # Not super().__init__: that creates the sqlite3 cursor, a hop of its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # makes close() a no-op
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._arraysize = 1
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]  # None before an INSERT

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        adapted = cast(AdaptedConnection, self._adapt_connection)
        if adapted.worker_thread != threading.get_ident():
            return super().execute(operation, parameters)
        try:
            self._here(operation, parameters, many=False)
        except Exception as error:
            adapted._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        adapted = cast(AdaptedConnection, self._adapt_connection)
        if adapted.worker_thread != threading.get_ident():
            return super().executemany(operation, seq_of_parameters)
        try:
            self._here(operation, seq_of_parameters, many=True)
        except Exception as error:
            adapted._handle_exception(error)

    def _here(self, operation: Any, parameters: Any, *, many: bool) -> None:
        """The statement run directly, inside AdaptedConnection.run_on_worker."""
        adapted = cast(AdaptedConnection, self._adapt_connection)
        driver: Any = self._connection
        begin, adapted.pending_begin = adapted.pending_begin, None
        try:
            rows, self._description, self._rowcount, self._lastrowid, adapted.in_transaction = (
                _statement(driver._conn, begin, operation, parameters, many))
        except BaseException:
            adapted.in_transaction = True
            raise
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        async with self._adapt_connection._execute_mutex:
            await self._hop(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        async with self._adapt_connection._execute_mutex:
            await self._hop(operation, seq_of_parameters, many=True)

    async def _hop(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapted = cast(AdaptedConnection, self._adapt_connection)
        driver: Any = self._connection  # an aiosqlite.Connection
        begin, adapted.pending_begin = adapted.pending_begin, None
        try:
            rows, self._description, self._rowcount, self._lastrowid, adapted.in_transaction = (
                await driver._execute(_statement, driver._conn, begin, operation, parameters,
                                      many))
        except BaseException:
            adapted.in_transaction = True  # failed or cancelled midway: assume the worst
            raise
        self._rows = collections.deque(rows)


class _ServerSideCursor(AsyncAdapt_aiosqlite_ss_cursor):
    """The stock streaming cursor; what it runs is not tracked, so a rollback will hop."""

    __slots__ = ()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        adapted = cast(AdaptedConnection, self._adapt_connection)
        adapted.in_transaction = True
        if adapted.pending_begin is not None:
            begin, adapted.pending_begin = adapted.pending_begin, None
            driver: Any = self._connection
            await driver._execute(driver._conn.execute, begin)
        return await super()._execute_async(operation, parameters)


class AdaptedConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("in_transaction", "pending_begin", "worker_thread")
    _cursor_cls = _Cursor
    _ss_cursor_cls = _ServerSideCursor

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)  # type: ignore[arg-type]
        # As of the last hop; True when unknown (then a rollback hops, to be safe).
        self.in_transaction = True
        self.pending_begin: str | None = None
        # The thread of aiosqlite's worker while run_on_worker's function runs there.
        self.worker_thread: int | None = None

    async def run_on_worker(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`fn(*args)` on aiosqlite's thread, in one hop: the statements it runs through this
        connection (SQLAlchemy's synchronous API, e.g. a Session's) go to sqlite3 directly.

        `fn` must do no other I/O: what would await (a pool checkout) fails there, since no
        greenlet links that thread to the event loop; this connection's commit and rollback
        are done there directly. It must also
        touch nothing the event loop's thread uses meanwhile; the objects of the one task
        awaiting it are safe, and if that task is cancelled, this still waits for `fn` to
        end (its objects must not be used on two threads at once), then re-raises."""
        driver: Any = self._connection

        def on_worker() -> _T:
            self.worker_thread = threading.get_ident()
            try:
                return fn(*args)
            finally:
                self.worker_thread = None

        async with self._execute_mutex:
            try:
                # Awaited in place, not through a task and a shield: the result is back two
                # turns of the event loop after fn ends instead of four, and under load each
                # turn is milliseconds during which the connection is held and idle.
                result: _T = await driver._execute(on_worker)
                return result
            except asyncio.CancelledError:
                # fn goes on to its end on the worker, which takes one call at a time: a
                # no-op queued behind it returns once fn has ended. Wait for that, through
                # further cancellations; the cancellation is what the caller gets.
                behind = asyncio.ensure_future(driver._execute(_nothing))
                while not behind.done():
                    try:
                        await asyncio.wait({behind})
                    except asyncio.CancelledError:
                        continue
                raise

    def begin(self, statement: str) -> None:
        """Open a transaction with `statement` ("BEGIN IMMEDIATE"), sent in the same hop as
        the next statement; a commit or rollback before any drops it unsent."""
        self.pending_begin = statement

    def commit(self) -> None:
        self.pending_begin = None
        if not self.in_transaction:
            return
        if self.worker_thread == threading.get_ident():  # inside run_on_worker: no hop
            try:
                cast(Any, self._connection)._conn.commit()
            except Exception as error:
                self._handle_exception(error)
        else:
            super().commit()
        self.in_transaction = False

    def rollback(self) -> None:
        self.pending_begin = None
        if not self.in_transaction:
            return
        if self.worker_thread == threading.get_ident():  # inside run_on_worker: no hop
            try:
                cast(Any, self._connection)._conn.rollback()
            except Exception as error:
                self._handle_exception(error)
        else:
            super().rollback()
        self.in_transaction = False


class _Module(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AdaptedConnection:
        stock = super().connect(*arg, **kw)
        return AdaptedConnection(self, cast(aiosqlite.Connection, stock._connection))


# For create_async_engine(url, module=AIOSQLITE): stands in for the module SQLAlchemy's
# aiosqlite dialect would import.
AIOSQLITE = _Module(aiosqlite, sqlite3)
