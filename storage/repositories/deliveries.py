from __future__ import annotations

from sqlalchemy import select

from storage.models import DeliveryRow, DeliveryStatus
from storage.repositories.base import Repository

# A delivery the customer may still answer.
OPEN = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING, DeliveryStatus.SENT,
        DeliveryStatus.REMINDED, DeliveryStatus.ANSWERED)


class DeliveryRepository(Repository):
    """Surveys due to a customer: one row per (trigger or campaign, customer)."""

    async def by_token(self, token: str) -> DeliveryRow | None:
        return await self.session.scalar(select(DeliveryRow).where(DeliveryRow.token == token))

    async def pending_for(self, customer_id: int, channel: str) -> DeliveryRow | None:
        """The customer's latest delivery in this channel that is still open to answer."""
        return await self.session.scalar(
            select(DeliveryRow)
            .where(DeliveryRow.customer_id == customer_id, DeliveryRow.channel == channel,
                   DeliveryRow.status.in_(OPEN))
            .order_by(DeliveryRow.due_at.desc(), DeliveryRow.id.desc()).limit(1))
