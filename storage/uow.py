"""The unit of work: one AsyncSession, one transaction, the repositories over it, and
`record`, which writes what one dialogue turn produced."""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, make_transient_to_detached

from conversations.engine import Turn
from conversations.replies import Problem
from storage import rollups
from storage.models import AnswerRow, SessionRow, SessionStatus
from storage.repositories import (
    AlertRepository,
    AnswerRepository,
    AuditRepository,
    CustomerRepository,
    RollupRepository,
    ScriptRepository,
    SessionRepository,
)
from storage.repositories.sessions import save
from storage.sqlite_adapter import AdaptedConnection


class UnitOfWork:
    """`async with UnitOfWork(factory) as uow: ...; await uow.commit()`. Leaving the block
    without commit rolls back. Never share one between tasks, and never hold one open
    across a call to Telegram or any other network peer."""

    session: AsyncSession
    customers: CustomerRepository
    scripts: ScriptRepository
    sessions: SessionRepository
    answers: AnswerRepository
    rollups: RollupRepository
    alerts: AlertRepository
    audit: AuditRepository

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory

    async def __aenter__(self) -> Self:
        self.session = self._factory()
        self.customers = CustomerRepository(self.session)
        self.scripts = ScriptRepository(self.session)
        self.sessions = SessionRepository(self.session)
        self.answers = AnswerRepository(self.session)
        self.rollups = RollupRepository(self.session)
        self.alerts = AlertRepository(self.session)
        self.audit = AuditRepository(self.session)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.session.close()  # rolls back whatever was not committed

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    async def record(self, dialogue: SessionRow, turn: Turn, *, now: datetime,
                     timezone: str = "UTC") -> list[AnswerRow]:
        """Write one turn: drop retracted answers, insert new ones, keep the rollups in step
        and save the state, all in this unit's transaction; StaleSession if the dialogue
        moved on since it was read. Returns only the answers inserted now: recording a turn
        again (a redelivered update) inserts and counts nothing, so alerts fire once.

        An answer is counted on its day in `timezone` (the survey's; a retraction counts down
        that same day), in the segment the dialogue started with, its state's
        customer["segment"]: no query per answer, and one dialogue is never split between
        segments.

        On SQLite the whole turn runs on the driver's thread, in one hop for all its
        statements (see AdaptedConnection.run_on_worker); elsewhere in SQLAlchemy's greenlet."""
        connection = await self.session.connection()  # checked out and begun here, not there
        raw = (await connection.get_raw_connection()).dbapi_connection
        if isinstance(raw, AdaptedConnection):
            return await raw.run_on_worker(_record, self.session.sync_session, dialogue, turn,
                                           now, timezone)
        return await self.session.run_sync(_record, dialogue, turn, now, timezone)


_answers: Table = AnswerRow.__table__  # type: ignore[assignment]


def _insert_answer(insert: Any) -> postgresql.Insert | sqlite.Insert:
    return insert(_answers).on_conflict_do_nothing(  # type: ignore[no-any-return]
        index_elements=["session_id", "step_id"]).returning(_answers.c.id)


# The hot path's statements, built once (see storage/rollups.py). An answer's columns are
# its parameters; RETURNING only the id: the rest of the row is what was just sent.
INSERT_ANSWER = {"postgresql": _insert_answer(postgresql.insert),
                 "sqlite": _insert_answer(sqlite.insert)}
RETRACT = (delete(_answers)
           .where(_answers.c.session_id == bindparam("k_session_id"),
                  _answers.c.step_id.in_(bindparam("k_steps", expanding=True)))
           .returning(*(_answers.c[name] for name in (
               "survey_id", "step_id", "metric", "score", "choices", "channel", "segment",
               "answered_at"))))


def _record(session: Session, dialogue: SessionRow, turn: Turn, now: datetime,
            timezone: str) -> list[AnswerRow]:
    """UnitOfWork.record, run synchronously on the unit's session: one switch into
    SQLAlchemy's greenlet for the whole turn instead of one per statement."""
    connection = session.connection()
    state = turn.state
    if turn.retracted:
        removed = connection.execute(
            RETRACT, {"k_session_id": dialogue.id, "k_steps": list(turn.retracted)}).all()
        rollups.count(connection, removed, timezone, -1)

    inserted: list[AnswerRow] = []
    insert = INSERT_ANSWER[connection.dialect.name]
    for answer in turn.answers:
        values = {
            "session_id": dialogue.id, "customer_id": dialogue.customer_id,
            "survey_id": dialogue.survey_id, "script_version": dialogue.script_version,
            "step_id": answer.step, "metric": answer.metric, "score": answer.score,
            "choices": list(answer.choices) or None, "text": answer.text,
            "channel": dialogue.channel, "segment": str(state.customer.get("segment", "")),
            "context": dict(state.context), "alert": answer.alert, "answered_at": now}
        answer_id = connection.execute(insert, values).scalar()
        if answer_id is None:  # this answer was recorded before
            continue
        # The row as the database now holds it, made persistent in this session as if loaded
        # (merge: SQLite may reuse the id of a retracted answer this session still maps).
        row = AnswerRow(id=answer_id, **values | {"answered_at": now.astimezone(UTC)})
        make_transient_to_detached(row)
        inserted.append(session.merge(row, load=False))
    rollups.count(connection, inserted, timezone, +1)

    changes: dict[str, object] = {"state": state.to_json(), "current_step": state.step}
    if turn.finished and dialogue.status == SessionStatus.ACTIVE:
        expired = turn.reprompt is not None and turn.reprompt.problem is Problem.EXPIRED
        changes["status"] = SessionStatus.EXPIRED if expired else SessionStatus.COMPLETED
        changes["completed_at"] = None if expired else now
    save(connection, dialogue, now, changes)
    return inserted
