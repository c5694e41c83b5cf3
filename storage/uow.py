"""The unit of work: one AsyncSession, one transaction, the repositories over it, and
`record`, which writes what one dialogue turn produced."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Self

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conversations.engine import Turn
from conversations.replies import Problem
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
from storage.rollups import count_answer, upsert_insert


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
        segments."""
        state = turn.state
        if turn.retracted:
            for removed in await self.session.scalars(
                    delete(AnswerRow)
                    .where(AnswerRow.session_id == dialogue.id,
                           AnswerRow.step_id.in_(turn.retracted))
                    .returning(AnswerRow)):
                await count_answer(self.session, removed, timezone, -1)

        inserted: list[AnswerRow] = []
        for answer in turn.answers:
            insert = upsert_insert(self.session, AnswerRow)
            row = await self.session.scalar(
                insert.values(
                    session_id=dialogue.id, customer_id=dialogue.customer_id,
                    survey_id=dialogue.survey_id, script_version=dialogue.script_version,
                    step_id=answer.step, metric=answer.metric, score=answer.score,
                    choices=list(answer.choices) or None, text=answer.text,
                    channel=dialogue.channel, segment=str(state.customer.get("segment", "")),
                    context=dict(state.context), alert=answer.alert, answered_at=now)
                .on_conflict_do_nothing(index_elements=["session_id", "step_id"])
                .returning(AnswerRow))
            if row is not None:  # None: this answer was recorded before
                await count_answer(self.session, row, timezone, +1)
                inserted.append(row)

        values: dict[str, object] = {"state": state.to_json(), "current_step": state.step}
        if turn.finished and dialogue.status == SessionStatus.ACTIVE:
            expired = turn.reprompt is not None and turn.reprompt.problem is Problem.EXPIRED
            values["status"] = SessionStatus.EXPIRED if expired else SessionStatus.COMPLETED
            values["completed_at"] = None if expired else now
        await self.sessions.save(dialogue, now=now, **values)
        return inserted
