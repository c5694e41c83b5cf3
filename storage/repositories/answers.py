from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from storage.models import AnswerRow
from storage.repositories.base import Repository


class AnswerRepository(Repository):
    """Reading answers. They are written only by UnitOfWork.record, with their rollups."""

    async def for_session(self, session_id: int) -> Sequence[AnswerRow]:
        return (await self.session.scalars(
            select(AnswerRow).where(AnswerRow.session_id == session_id)
            .order_by(AnswerRow.id))).all()

    async def list(self, survey_id: str, start: datetime, end: datetime, *, after_id: int = 0,
                   limit: int | None = None) -> Sequence[AnswerRow]:
        """Answers given in [start, end), oldest first; page with after_id = the last id."""
        return (await self.session.scalars(
            select(AnswerRow)
            .where(AnswerRow.survey_id == survey_id, AnswerRow.answered_at >= start,
                   AnswerRow.answered_at < end, AnswerRow.id > after_id)
            .order_by(AnswerRow.id).limit(limit))).all()
