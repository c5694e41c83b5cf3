from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from storage.models import DeliveryRow, DeliveryStatus
from storage.repositories.base import Repository

# A delivery the customer may still answer.
OPEN = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING, DeliveryStatus.SENT,
        DeliveryStatus.REMINDED, DeliveryStatus.ANSWERED)

# Built once (parameters k_token; k_customer_id and k_channel).
_BY_TOKEN = select(DeliveryRow).where(DeliveryRow.token == bindparam("k_token"))
_PENDING_FOR = (select(DeliveryRow)
                .where(DeliveryRow.customer_id == bindparam("k_customer_id"),
                       DeliveryRow.channel == bindparam("k_channel"),
                       DeliveryRow.status.in_(OPEN))
                .order_by(DeliveryRow.due_at.desc(), DeliveryRow.id.desc()).limit(1))


def by_token(session: Session, token: str) -> DeliveryRow | None:
    """DeliveryRepository.by_token for code already running synchronously."""
    return session.scalar(_BY_TOKEN, {"k_token": token})


def pending_for(session: Session, customer_id: int, channel: str) -> DeliveryRow | None:
    """DeliveryRepository.pending_for for code already running synchronously."""
    return session.scalar(_PENDING_FOR, {"k_customer_id": customer_id, "k_channel": channel})


class DeliveryRepository(Repository):
    """Surveys due to a customer: one row per (trigger or campaign, customer)."""

    async def by_token(self, token: str) -> DeliveryRow | None:
        return await self.session.run_sync(by_token, token)

    async def pending_for(self, customer_id: int, channel: str) -> DeliveryRow | None:
        """The customer's latest delivery in this channel that is still open to answer."""
        return await self.session.run_sync(pending_for, customer_id, channel)
