"""The unit of work: one AsyncSession, one transaction, the repositories over it, `record`,
which writes what one dialogue turn produced, and `step`, a reply's read-advance-record."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from storage.db import READ_ONLY
from storage.queries.admin import Admin
from storage.queries.metrics import Metrics
from storage.repositories import (
    AlertRepository,
    AuditRepository,
    CustomerRepository,
    DeliveryRepository,
    EventRepository,
    ScriptRepository,
    SessionRepository,
)
from storage.repositories.alerts import Alerts
from storage.repositories.answers import Answers
from storage.repositories.audit import Audit
from storage.repositories.campaigns import Campaigns
from storage.repositories.customers import Customers
from storage.repositories.deliveries import Deliveries
from storage.repositories.dialogues import Dialogues
from storage.repositories.events import Events
from storage.repositories.logins import Logins
from storage.repositories.outbox import Outbox
from storage.repositories.rollups import Rollups
from storage.repositories.scripts import Scripts
from storage.sqlite_adapter import AdaptedConnection
from storage.sqlite_writer import SqliteWriter

_T = TypeVar("_T")


class Store:
    """The repositories over one transaction: what a function given to UnitOfWork.write or
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
        async with self._factory(execution_options={READ_ONLY: True}) as session:
            connection = await session.connection(execution_options={READ_ONLY: True})
            raw = (await connection.get_raw_connection()).dbapi_connection
            if isinstance(raw, AdaptedConnection):
                return await raw.run_on_worker(
                    lambda sync, _: fn(Store(sync)), session.sync_session, True)
            return await session.run_sync(lambda sync: fn(Store(sync)))


def _in_store(info: Mapping[str, Any], fn: Callable[[Store], _T], session: Session) -> _T:
    session.info.update(info)  # the writer's Session is its own: say what the factory says
    return fn(Store(session))


class UnitOfWork:
    """The former style, going away as the services move to Database: `async with
    UnitOfWork(factory) as uow: ...; await uow.commit()`."""

    session: AsyncSession
    customers: CustomerRepository
    scripts: ScriptRepository
    sessions: SessionRepository
    alerts: AlertRepository
    audit: AuditRepository
    events: EventRepository
    deliveries: DeliveryRepository

    def __init__(self, factory: async_sessionmaker[AsyncSession], *,
                 read_only: bool = False) -> None:
        """`read_only`: the unit only reads (see `read`), e.g. a report or a page."""
        self._factory = factory
        self._read_only = read_only
        bind = factory.kw.get("bind")
        self._engine = bind if isinstance(bind, AsyncEngine) else None

    async def __aenter__(self) -> Self:
        self.session = (self._factory(execution_options={READ_ONLY: True})
                        if self._read_only else self._factory())
        self.customers = CustomerRepository(self.session)
        self.scripts = ScriptRepository(self.session)
        self.sessions = SessionRepository(self.session)
        self.alerts = AlertRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.events = EventRepository(self.session)
        self.deliveries = DeliveryRepository(self.session)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.session.close()  # rolls back whatever was not committed

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    async def _run(self, fn: Callable[[Session, bool], _T], *, read_only: bool = False
                   ) -> tuple[_T, bool]:
        """`fn(session, here)` on the unit's synchronous session: on SQLite on the driver's
        thread in one hop for all its statements (see AdaptedConnection.run_on_worker), where
        `here` is True and fn may commit on the spot; elsewhere in SQLAlchemy's greenlet."""
        # Checked out and begun here, not there.
        connection = await self.session.connection(
            execution_options={READ_ONLY: True} if read_only else None)
        raw = (await connection.get_raw_connection()).dbapi_connection
        if isinstance(raw, AdaptedConnection):
            return await raw.run_on_worker(fn, self.session.sync_session, True), True
        return await self.session.run_sync(fn, False), False

    async def run(self, fn: Callable[[Connection], _T], *, commit: bool = False) -> _T:
        """`fn(connection)`: several Core statements in one hop on SQLite (see `_run`), and
        with `commit=True` the commit too, as `apply` does; elsewhere in SQLAlchemy's
        greenlet. `fn` must do no I/O but through the connection it is given."""
        if commit:
            return await self.apply(lambda session: fn(session.connection()))
        result, _ = await self._run(lambda session, here: fn(session.connection()))
        return result

    async def apply(self, fn: Callable[[Session], _T]) -> _T:
        """`fn(session)` on a synchronous session, then commit: a whole unit of work in one
        go. If fn raises, nothing is committed (and the error is raised here).

        On our SQLite adapter fn runs on the driver's thread, so it must do no I/O but
        through the Session it is given, and it is handed to the engine's SqliteWriter: one
        hop for it and for every unit that came while the one before ran, each in its own
        transaction on a Session of its own (unless this unit has begun a transaction
        already: then on the unit's session, in a hop of its own). Elsewhere it runs on the
        unit's session in SQLAlchemy's greenlet."""
        writer = SqliteWriter.of(self._engine) if self._engine is not None else None
        if writer is not None and not self.session.in_transaction():
            if info := self._factory.kw.get("info"):  # the writer's Session is its own
                fn = functools.partial(_informed, info, fn)
            return await writer.apply(fn)

        def run(session: Session, here: bool) -> _T:
            result = fn(session)
            if here:
                _commit_here(session)
            return result

        result, on_worker = await self._run(run)
        if on_worker:
            # Committed on the worker: closing only returns the connection (with no hop: see
            # AdaptedConnection.rollback), at a third of the CPU of SQLAlchemy's commit.
            await self.session.close()
        else:
            await self.session.commit()
        return result

def _informed(info: Mapping[str, Any], fn: Callable[[Session], _T], session: Session) -> _T:
    """`fn(session)` on a Session that says what the unit's factory says (the outbox
    switch, the metrics' observer: see storage.db.session_factory)."""
    session.info.update(info)
    return fn(session)


def _commit_here(session: Session) -> None:
    """Commit on the driver's connection, inside run_on_worker's hop; SQLAlchemy's commit
    afterwards finds nothing left to do on SQLite's side (AdaptedConnection.commit)."""
    session.connection().connection.dbapi_connection.commit()  # type: ignore[union-attr]


