from __future__ import annotations

from datetime import datetime

from storage.errors import NotFound
from storage.models import AlertRow, AlertStatus, AnswerRow, SessionRow
from storage.repositories.base import Repository


class AlertRepository(Repository):
    async def raise_for(self, answer: AnswerRow, dialogue: SessionRow, *,
                        now: datetime) -> AlertRow:
        row = AlertRow(session_id=dialogue.id, answer_id=answer.id,
                       customer_id=dialogue.customer_id, survey_id=answer.survey_id,
                       step_id=answer.step_id, score=answer.score, status=AlertStatus.OPEN,
                       notes=[], created_at=now, updated_at=now)
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, alert_id: int) -> AlertRow:
        row = await self.session.get(AlertRow, alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id}")
        return row
