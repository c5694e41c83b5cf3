"""Writes on SQLite (Database.write) applied back to back on aiosqlite's thread, as many
per hop as are waiting.

SQLite has one writer at a time, so our engine has one connection (storage/db.py), and a
unit of work holds it from checkout to checkin. Run one hop per unit, that hold lasted
~4x the unit's own work under load: the turns of a busy event loop that check the
connection out, hand the result back and check it in again, and the waits for the GIL
between the worker's statements, during which every other unit queued for the connection.
Here a unit that finds another running waits for it to end and then goes to the worker
with every unit that came meanwhile: one checkout and one hop for all of them. Each still
runs in a transaction of its own (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if it raises),
on a Session of its own, so they share nothing but the connection and the trip.

The connection is checked out per batch, so other transactions (Database.read, a plain
AsyncSession) queue for it between batches as they did between units."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from storage.db import Outage, outage
from storage.sqlite_adapter import AIOSQLITE, AdaptedConnection

_T = TypeVar("_T")


@dataclass(eq=False, slots=True)
class _Job(Generic[_T]):
    fn: Callable[[Session], _T]
    result: asyncio.Future[_T]
    # Set once the job is taken into a batch: done when the batch has ended on the worker.
    batch: asyncio.Future[None] | None = field(default=None)


class SqliteWriter:
    """One per engine and event loop: `await SqliteWriter.of(engine).apply(fn)`."""

    def __init__(self, engine: AsyncEngine, loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self._loop = loop
        self._waiting: list[_Job[Any]] = []
        self._draining: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, engine: AsyncEngine) -> SqliteWriter | None:
        """The writer of an engine on our SQLite adapter; None for any other engine."""
        if engine.dialect.loaded_dbapi is not AIOSQLITE:
            return None
        loop = asyncio.get_running_loop()
        writer = _writers.get(engine.sync_engine)
        if writer is None or writer._loop is not loop:
            writer = _writers[engine.sync_engine] = cls(engine, loop)
        return writer

    async def apply(self, fn: Callable[[Session], _T]) -> _T:
        """`fn(session)` in a transaction of its own, committed if it returns, rolled back if
        it raises (and the error raised here). fn runs on aiosqlite's thread: it must do no
        I/O but through the Session it is given. If the caller is cancelled once fn has
        started, CancelledError comes only after fn has ended (committed, if it returned)."""
        result: asyncio.Future[_T] = self._loop.create_future()
        job = _Job(fn, result)
        self._waiting.append(job)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        try:
            return await result
        except asyncio.CancelledError:
            if job.batch is None:  # not started: it never will
                self._waiting.remove(job)
            else:  # fn's objects are the caller's: not in use on two threads at once
                while not job.batch.done():
                    try:
                        await asyncio.wait({job.batch})
                    except asyncio.CancelledError:
                        continue
            raise

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                done = self._loop.create_future()
                for job in batch:
                    job.batch = done
                try:
                    outcomes = await self._run(batch)
                except BaseException as error:  # no connection (pool timeout), or shut down
                    for job in batch:
                        if not job.result.done():
                            job.result.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                    continue
                finally:
                    done.set_result(None)
                for job, (ok, value) in zip(batch, outcomes, strict=True):
                    if job.result.done():  # its caller was cancelled
                        continue
                    if ok:
                        job.result.set_result(value)
                    else:
                        job.result.set_exception(value)
        finally:
            self._draining = None

    async def _run(self, batch: list[_Job[Any]]) -> list[tuple[bool, Any]]:
        async with self._engine.connect() as connection:
            raw = (await connection.get_raw_connection()).dbapi_connection
            assert isinstance(raw, AdaptedConnection)
            return await raw.run_on_worker(_apply_all, connection.sync_connection,
                                           [job.fn for job in batch])


# Keyed by the engine's synchronous side: an engine's writer lives as long as it does.
_writers: weakref.WeakKeyDictionary[Any, SqliteWriter] = weakref.WeakKeyDictionary()


def _apply_all(connection: Connection, fns: list[Callable[[Session], Any]]
               ) -> list[tuple[bool, Any]]:
    """On aiosqlite's thread: each function in its own transaction, in order. Once one
    could not have the write lock within busy_timeout, the rest fail with it: each would
    wait as long again, and a batch of 50 would hold every writer for minutes."""
    outcomes: list[tuple[bool, Any]] = []
    dbapi_connection: Any = connection.connection.dbapi_connection
    locked: BaseException | None = None
    for fn in fns:
        if locked is not None:
            outcomes.append((False, locked))
            continue
        try:
            with Session(bind=connection, expire_on_commit=False) as session:
                value = fn(session)
                session.flush()  # what fn left pending, if anything
                # Committed on the driver's connection: closing the session then rolls back
                # nothing (AdaptedConnection.rollback), at a third of the CPU of the
                # session's own commit. If fn raised, closing rolls its transaction back.
                dbapi_connection.commit()
        except BaseException as error:  # the caller's to see; the next function goes on
            outcomes.append((False, error))
            if outage(error) is Outage.UNAVAILABLE:
                locked = error
        else:
            outcomes.append((True, value))
    return outcomes
