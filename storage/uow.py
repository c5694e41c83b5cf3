"""Where transactions begin: Database.write and read run a synchronous function over a
Store, the repositories over one transaction."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from storage.db import READ_ONLY, Outage, outage, sync_reader
from storage.queries.admin import Admin
from storage.queries.health import Health
from storage.queries.metrics import Metrics
from storage.repositories.alerts import Alerts
from storage.repositories.answers import Answers
from storage.repositories.audit import Audit
from storage.repositories.campaigns import Campaigns
from storage.repositories.customers import Customers
from storage.repositories.deliveries import Deliveries
from storage.repositories.dialogues import Dialogues
from storage.repositories.events import Events
from storage.repositories.limits import Limits
from storage.repositories.logins import Logins
from storage.repositories.outbox import Outbox
from storage.repositories.rollups import Rollups
from storage.repositories.scripts import Scripts
from storage.sqlite_adapter import AdaptedConnection
from storage.sqlite_writer import SqliteWriter

_T = TypeVar("_T")


class Store:
    """The repositories over one transaction: what a function given to Database.write or
    read works with. No Session or Connection is handed out of storage."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @functools.cached_property
    def admin(self) -> Admin:
        return Admin(self._session)

    @functools.cached_property
    def alerts(self) -> Alerts:
        return Alerts(self._session)

    @functools.cached_property
    def answers(self) -> Answers:
        return Answers(self._session)

    @functools.cached_property
    def audit(self) -> Audit:
        return Audit(self._session)

    @functools.cached_property
    def campaigns(self) -> Campaigns:
        return Campaigns(self._session)

    @functools.cached_property
    def customers(self) -> Customers:
        return Customers(self._session)

    @functools.cached_property
    def deliveries(self) -> Deliveries:
        return Deliveries(self._session)

    @functools.cached_property
    def dialogues(self) -> Dialogues:
        return Dialogues(self._session)

    @functools.cached_property
    def events(self) -> Events:
        return Events(self._session)

    @functools.cached_property
    def health(self) -> Health:
        return Health(self._session)

    @functools.cached_property
    def limits(self) -> Limits:
        return Limits(self._session)

    @functools.cached_property
    def logins(self) -> Logins:
        return Logins(self._session)

    @functools.cached_property
    def metrics(self) -> Metrics:
        """The reads behind a survey's rates (bot.services.metrics)."""
        return Metrics(self._session)

    @functools.cached_property
    def outbox(self) -> Outbox:
        return Outbox(self._session)

    @functools.cached_property
    def rollups(self) -> Rollups:
        return Rollups(self._session)

    @functools.cached_property
    def scripts(self) -> Scripts:
        return Scripts(self._session)


class Database:
    """Where the services' transactions begin: `await db.write(fn)` runs `fn(store)` in one
    transaction and commits it; `await db.read(fn)` runs it in one that only reads. `fn` is
    synchronous and does no I/O but through the Store: on SQLite it runs on the driver's
    thread, in one hop for all its statements (queued with the other writes waiting, see
    SqliteWriter); elsewhere in SQLAlchemy's greenlet. If fn raises, nothing is committed
    and the error is raised here. Never hold a transaction across a call to a network
    peer: write, call, write again."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory
        bind = factory.kw.get("bind")
        self._engine = bind if isinstance(bind, AsyncEngine) else None
        self._info: Mapping[str, Any] = factory.kw.get("info") or {}

    @property
    def factory(self) -> async_sessionmaker[AsyncSession]:
        """For the composition root and tests: the services never see it."""
        return self._factory

    @property
    def engine(self) -> AsyncEngine | None:
        return self._engine

    async def write(self, fn: Callable[[Store], _T]) -> _T:
        writer = SqliteWriter.of(self._engine) if self._engine is not None else None
        if writer is not None:
            return await writer.apply(functools.partial(_in_store, self._info, fn))
        async with self._factory() as session:
            result = await session.run_sync(lambda sync: fn(Store(sync)))
            await session.commit()
            return result

    async def read(self, fn: Callable[[Store], _T]) -> _T:
        """On SQLite in a transaction that takes no write lock (storage.db.READ_ONLY): pages
        that only show something neither wait for writers nor queue behind one another."""
        if self._engine is not None and SqliteWriter.of(self._engine) is not None:
            # As the writer does: a Session made on the worker over the checked-out
            # connection, no AsyncSession around it (a third of a page's read CPU).
            async with self._engine.connect() as connection:
                raw = (await connection.get_raw_connection()).dbapi_connection
                assert isinstance(raw, AdaptedConnection)
                return await raw.run_on_worker(_read_here, raw, self._info, fn,
                                               connection.sync_connection)
        async with self._factory(execution_options={READ_ONLY: True}) as session:
            await session.connection(execution_options={READ_ONLY: True})
            return await session.run_sync(lambda sync: fn(Store(sync)))

    async def peek(self, fn: Callable[[Store], _T]) -> _T:
        """A read of a few rows found by key (a page shown again), as `read` does it, but on
        a SQLite file straight on the event loop's thread, on a connection of its own: the
        hop to the driver's thread and back cost more than such a read (a page render's
        CPU fell from 0.9 to 0.5 ms). In WAL mode it waits for no writer; if SQLite says
        busy all the same, the read goes the usual way. Anything that scans (a report) must
        use `read`: here it would hold up everything else the process does."""
        reader = sync_reader(self._engine) if self._engine is not None else None
        if reader is None:
            return await self.read(fn)
        try:
            with reader.connect() as connection:
                return _read_in(connection, self._info, fn)
        except DBAPIError as error:
            if outage(error) is not Outage.UNAVAILABLE:
                raise
        return await self.read(fn)


def _read_here(raw: AdaptedConnection, info: Mapping[str, Any], fn: Callable[[Store], _T],
               connection: Connection) -> _T:
    """On SQLite's thread: the read, then its transaction ended in the same hop (closing the
    connection afterwards finds nothing to roll back: no second trip to the thread)."""
    try:
        return _read_in(connection, info, fn)
    finally:
        raw.rollback()


def _read_in(connection: Connection, info: Mapping[str, Any], fn: Callable[[Store], _T]) -> _T:
    """`fn` over a Session of its own on `connection`, in a transaction that only reads."""
    with Session(bind=connection.execution_options(**{READ_ONLY: True}),
                 info=dict(info)) as session:
        return fn(Store(session))


def _in_store(info: Mapping[str, Any], fn: Callable[[Store], _T], session: Session) -> _T:
    session.info.update(info)  # the writer's Session is its own: say what the factory says
    return fn(Store(session))
