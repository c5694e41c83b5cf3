"""The unit of work: one AsyncSession, one transaction, the repositories over it, `record`,
which writes what one dialogue turn produced, and `step`, a reply's read-advance-record."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

from sqlalchemy import Connection, Select, Table, bindparam, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from conversations.engine import Turn
from conversations.replies import Problem
from storage import outbox, rollups
from storage.db import ANONYMOUS_ALERTS, ANONYMOUS_ALERTS_PER_HOUR, OBSERVE, READ_ONLY
from storage.queries.admin import Admin
from storage.models import (
    AlertRow,
    AlertStatus,
    AnswerRow,
    DialogueRow,
    DialogueStatus,
    Respondent,
)
from storage.repositories import (
    AlertRepository,
    AnswerRepository,
    AuditRepository,
    CustomerRepository,
    DeliveryRepository,
    EventRepository,
    RollupRepository,
    ScriptRepository,
    SessionRepository,
    events,
)
from storage.repositories.alerts import Alerts, anonymous_alert_allowed
from storage.repositories.answers import Answers
from storage.repositories.audit import Audit
from storage.repositories.customers import Customers
from storage.repositories.deliveries import Deliveries, mark_answered
from storage.repositories.dialogues import Dialogues, save
from storage.repositories.events import Events
from storage.repositories.logins import Logins
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
    answers: AnswerRepository
    rollups: RollupRepository
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
        self.answers = AnswerRepository(self.session)
        self.rollups = RollupRepository(self.session)
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

    async def step(self, find: Select[DialogueRow], params: Mapping[str, Any],
                   step: Step, *, now: datetime, event: Event | None = None
                   ) -> Stepped | Duplicate | None:
        """A reply's whole unit of work: read the dialogue with `find`, let `step` say what
        the reply does to it (a turn, and the survey's time zone to count it in), record
        the turn unless it only re-asks, and commit. None if `find` finds no dialogue.
        With `event` (channel, id), an event seen before is not applied again: the result
        is a Duplicate.

        On SQLite on the driver's thread (see `apply`): `step` must do no I/O but through
        the Session it is given (to read a script the process has not seen yet, say).
        Elsewhere StaleDialogue may come from a concurrent writer."""
        return await self.apply(functools.partial(_step, find, params, step, now, event))

    async def record(self, dialogue: DialogueRow, turn: Turn, *, now: datetime,
                     timezone: str = "UTC", commit: bool = False) -> list[Recorded]:
        """Write one turn: drop retracted answers, insert new ones with an open alert for each
        that asks for one, keep the rollups in step and save the state, all in this unit's
        transaction; StaleDialogue if the dialogue moved on since it was read. Returns only
        the answers inserted now: recording a turn again (a redelivered update) inserts and
        counts nothing, so alerts are raised once.

        An answer is counted on its day in `timezone` (the survey's; a retraction counts down
        that same day), in the segment the dialogue started with, its state's
        customer["segment"]: no query per answer, and one dialogue is never split between
        segments.

        `commit=True` commits the unit right after, the common case: on SQLite in the same
        thread hop as the statements (a third of a reply's cost), elsewhere as uow.commit().

        On SQLite the whole turn runs on the driver's thread, in one hop for all its
        statements (see AdaptedConnection.run_on_worker); elsewhere in SQLAlchemy's greenlet."""
        def run(session: Session, here: bool) -> list[Recorded]:
            return record_here(session, dialogue, turn, now, timezone,
                               commit=commit and here)

        inserted, _ = await self._run(run)
        if commit:
            await self.session.commit()  # on SQLite already done: SQLAlchemy's side only
        return inserted


_answers: Table = AnswerRow.__table__  # type: ignore[assignment]
_alerts: Table = AlertRow.__table__  # type: ignore[assignment]


class Stepped(NamedTuple):
    """What UnitOfWork.step did: the dialogue as saved, the turn, and the answers stored."""

    dialogue: DialogueRow
    turn: Turn
    recorded: list[Recorded]


class Duplicate(NamedTuple):
    """UnitOfWork.step was given an event it had applied before: nothing was done. The
    dialogue as it is now (None if `find` finds none), to show where it stands."""

    dialogue: DialogueRow | None = None


# A channel's event that may come twice: (channel, its id there), e.g. a Telegram update.
Event = tuple[str, str]


# UnitOfWork.step's callback: (the unit's synchronous session, the dialogue) -> the turn and
# the time zone its answers count in.
Step = Callable[[Session, DialogueRow], tuple[Turn, str]]


class Recorded(NamedTuple):
    """An answer as UnitOfWork.record stored it, and the alert it raised, if any."""

    id: int
    session_id: int
    customer_id: int | None
    survey_id: str
    script_version: int
    step_id: str
    metric: str
    score: int | None
    choices: list[str] | None
    text: str | None
    channel: str
    segment: str
    respondent: str
    context: dict[str, Any]
    alert: bool
    answered_at: datetime
    alert_id: int | None


def _insert_answer(insert: Any) -> postgresql.Insert | sqlite.Insert:
    return insert(_answers).on_conflict_do_nothing(  # type: ignore[no-any-return]
        index_elements=["session_id", "step_id"]).returning(_answers.c.id)


# The hot path's statements, built once (see storage/rollups.py). An answer's columns are
# its parameters; RETURNING only the id: the rest of the row is what was just sent.
INSERT_ANSWER = {"postgresql": _insert_answer(postgresql.insert),
                 "sqlite": _insert_answer(sqlite.insert)}
INSERT_ALERT = insert(_alerts).returning(_alerts.c.id)
RETRACT = (delete(_answers)
           .where(_answers.c.session_id == bindparam("k_session_id"),
                  _answers.c.step_id.in_(bindparam("k_steps", expanding=True)))
           .returning(*(_answers.c[name] for name in (
               "survey_id", "step_id", "metric", "score", "choices", "channel", "segment",
               "respondent", "context", "answered_at"))))


def _step(find: Select[DialogueRow], params: Mapping[str, Any], step: Step, now: datetime,
          event: Event | None, session: Session) -> Stepped | Duplicate | None:
    # The event first: a redelivered one is known as such even after its dialogue ended.
    if event is not None and not events.claim(session.connection(), *event, now):
        return Duplicate(session.scalar(find, params))
    if (dialogue := session.scalar(find, params)) is None:
        return None  # the event stays claimed: "no dialogue" was the answer to it
    turn, timezone = step(session, dialogue)
    recorded = []
    if turn.reprompt is None or turn.finished:  # else nothing changed: nothing to write
        recorded = record_here(session, dialogue, turn, now, timezone)
    return Stepped(dialogue, turn, recorded)


def _informed(info: Mapping[str, Any], fn: Callable[[Session], _T], session: Session) -> _T:
    """`fn(session)` on a Session that says what the unit's factory says (the outbox
    switch, the metrics' observer: see storage.db.session_factory)."""
    session.info.update(info)
    return fn(session)


def _commit_here(session: Session) -> None:
    """Commit on the driver's connection, inside run_on_worker's hop; SQLAlchemy's commit
    afterwards finds nothing left to do on SQLite's side (AdaptedConnection.commit)."""
    session.connection().connection.dbapi_connection.commit()  # type: ignore[union-attr]


def record_here(session: Session, dialogue: DialogueRow, turn: Turn, now: datetime,
                timezone: str, *, commit: bool = False) -> list[Recorded]:
    """UnitOfWork.record, run synchronously on the unit's session (in `apply`, or in its
    own): one switch into SQLAlchemy's greenlet (or one thread hop) for the whole turn
    instead of one per statement. Core statements only: mapping the new rows as ORM objects
    cost a third of the turn's CPU."""
    connection = session.connection()
    state = turn.state
    if turn.retracted:
        removed = connection.execute(
            RETRACT, {"k_session_id": dialogue.id, "k_steps": list(turn.retracted)}).all()
        rollups.count(connection, removed, timezone, -1)

    inserted: list[Recorded] = []
    insert = INSERT_ANSWER[connection.dialect.name]
    for answer in turn.answers:
        # Anyone may send anonymous answers: a burst of them must not flood the team.
        alert = answer.alert and (dialogue.respondent != Respondent.ANONYMOUS or (
            anonymous_alert_allowed(connection, dialogue.survey_id, now, session.info.get(
                ANONYMOUS_ALERTS, ANONYMOUS_ALERTS_PER_HOUR))))
        values: dict[str, Any] = {
            "session_id": dialogue.id, "customer_id": dialogue.customer_id,
            "survey_id": dialogue.survey_id, "script_version": dialogue.script_version,
            "step_id": answer.step, "metric": answer.metric, "score": answer.score,
            "choices": list(answer.choices) or None, "text": answer.text,
            "channel": dialogue.channel, "segment": str(state.customer.get("segment", "")),
            "respondent": dialogue.respondent, "context": dict(state.context),
            "alert": alert, "answered_at": now}
        answer_id = connection.execute(insert, values).scalar()
        if answer_id is None:  # this answer was recorded before
            continue
        alert_id = None
        if alert:
            alert_id = connection.execute(INSERT_ALERT, {
                "session_id": dialogue.id, "answer_id": answer_id,
                "customer_id": dialogue.customer_id, "survey_id": dialogue.survey_id,
                "step_id": answer.step, "score": answer.score, "status": AlertStatus.OPEN,
                "notes": [], "created_at": now, "updated_at": now}).scalar_one()
        inserted.append(Recorded(id=answer_id, alert_id=alert_id, **values))
    rollups.count(connection, inserted, timezone, +1)

    changes: dict[str, object] = {"state": state.to_json(), "current_step": state.step}
    if turn.finished and dialogue.status == DialogueStatus.ACTIVE:
        expired = turn.reprompt is not None and turn.reprompt.problem is Problem.EXPIRED
        changes["status"] = DialogueStatus.EXPIRED if expired else DialogueStatus.COMPLETED
        changes["completed_at"] = None if expired else now
    save(connection, dialogue, now, changes)
    if dialogue.delivery_id is not None and (inserted or turn.finished):
        mark_answered(connection, dialogue.delivery_id, turn.finished, now)
    completed = changes.get("status") == DialogueStatus.COMPLETED
    if session.info.get(outbox.ENABLED) and (inserted or completed):
        outbox.add(session, outbox.turn_events(
            connection, dialogue, inserted, state.context if completed else None), now)
    if inserted and (observe := session.info.get(OBSERVE)) is not None:
        observe(inserted)  # counted even if the commit fails: a metric, not a record
    if commit:
        _commit_here(session)
    return inserted
