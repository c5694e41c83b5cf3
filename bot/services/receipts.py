"""Receipts: what a channel reports after a send (a bounce, a delivery report), applied to
the delivery it names (bot.services.channels.Receipt)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.services.channels import Receipt, ReceiptStatus
from bot.services.surveys import opt_out_customer
from storage.models import DeliveryStatus, DialogueStatus
from storage.uow import Database, Store

log = logging.getLogger(__name__)


class Receipts:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))

    async def apply(self, receipt: Receipt) -> str:
        """Apply what a channel reported after the send (a bounce, a delivery report), once
        per report. A failure that closes the address moves a delivery still waiting for
        its answer on to the next channel, as a refusal at the send would have. Returns
        what it did: duplicate, unknown (no delivery sent with that message id), delivered,
        fell_back, noted (a failure too late to matter, or one that does not close the
        address) or ignored (still trying)."""
        now = self._clock()

        def apply(store: Store) -> str:
            if not store.events.claim(receipt.channel, f"receipt:{receipt.event_id}", now):
                return "duplicate"
            deliveries = store.deliveries
            row = deliveries.by_message(receipt.channel, receipt.message_id)
            if row is None:
                return "unknown"
            if receipt.status in (ReceiptStatus.DELIVERED, ReceiptStatus.READ):
                if row.delivered_at is None:
                    row.delivered_at = now
                return "delivered"
            if receipt.status is not ReceiptStatus.FAILED:
                return "ignored"
            error = f"{receipt.channel}: {receipt.closed or receipt.error or 'failed'}"
            if receipt.opted_out:  # however late: nothing goes to them anywhere now
                opt_out_customer(store, store.customers.get(row.customer_id), now,
                                 channel=receipt.channel, delivery=row.id,
                                 by=receipt.closed or "platform")
            if receipt.closed is None or row.status not in (DeliveryStatus.SENT,
                                                            DeliveryStatus.REMINDED):
                row.last_error = error
                return "noted"
            dialogue = deliveries.dialogue_of(row.id)
            close_address(store, receipt.channel,
                          deliveries.reachable(row.customer_id).get(receipt.channel),
                          receipt.closed, dialogue.id if dialogue is not None
                          and dialogue.channel == receipt.channel else None, now)
            row.status, row.due_at, row.remind_at, row.expires_at = (
                DeliveryStatus.SCHEDULED, now, None, None)
            row.last_error, row.updated_at = error, now
            return "fell_back"

        done = await self._db.write(apply)
        log.info("receipt from %s: %s", receipt.channel, done,
                 extra={"channel": receipt.channel, "receipt": done})
        return done


def close_address(store: Store, channel: str, address: str | None, reason: str,
                  dialogue_id: int | None, now: datetime) -> None:
    """A channel said this address cannot be written to, at the send or in a report:
    nothing unprompted goes there any more, and the dialogue it was asked in there ends,
    so that its delivery goes on to the next channel (the caller puts it back)."""
    if address is not None:
        store.customers.mark_unreachable(channel, address, reason)
    if dialogue_id is not None:
        store.dialogues.end_if_active(dialogue_id, DialogueStatus.ABANDONED, now)
