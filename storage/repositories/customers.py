from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.errors import NotFound
from storage.models import (
    AlertRow,
    AnswerRow,
    CustomerRow,
    DeliveryRow,
    DeliveryStatus,
    DialogueRow,
    DialogueStatus,
    IdentityRow,
    OutboxRow,
    TriggerRow,
)
from storage.repositories.base import Repository, insert_row
from storage.repositories.dialogues import Dialogues

_identities: Table = IdentityRow.__table__  # type: ignore[assignment]

# Built once: every message from a channel starts here. Parameters: k_channel, k_address.
BY_IDENTITY = (select(CustomerRow)
               .join(IdentityRow, IdentityRow.customer_id == CustomerRow.id)
               .where(IdentityRow.channel == bindparam("k_channel"),
                      IdentityRow.address == bindparam("k_address")))


def _bind(insert: Any) -> postgresql.Insert | sqlite.Insert:
    statement = insert(_identities)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["channel", "address"],
        set_={"customer_id": statement.excluded.customer_id, "reachable": True,
              "unreachable_reason": None})


_BIND = {"postgresql": _bind(postgresql.insert), "sqlite": _bind(sqlite.insert)}
_UNREACHABLE = (update(_identities)
                .where(_identities.c.channel == bindparam("k_channel"),
                       _identities.c.address == bindparam("k_address")))


class Erasure(NamedTuple):
    """What Customers.erase changed: rows kept, anonymous."""

    erased_at: datetime
    again: bool  # erased before: nothing was left to erase but the files
    answers: int
    dialogues: int
    deliveries: int
    alerts: int


class Customers(Repository):
    """Customers and their identities (an address in a channel)."""

    def get(self, customer_id: int) -> CustomerRow:
        row = self.session.get(CustomerRow, customer_id)
        if row is None:
            raise NotFound(f"customer {customer_id}")
        return row

    def by_identity(self, channel: str, address: str) -> CustomerRow | None:
        return self.session.scalar(BY_IDENTITY, {"k_channel": channel, "k_address": address})

    def by_external_id(self, external_id: str) -> CustomerRow | None:
        return self.session.scalar(
            select(CustomerRow).where(CustomerRow.external_id == external_id))

    def add(self, *, now: datetime, external_id: str | None = None,
            first_name: str | None = None, phone: str | None = None, email: str | None = None,
            locale: str | None = None, timezone: str | None = None,
            attributes: Mapping[str, Any] | None = None) -> CustomerRow:
        return insert_row(self.session, CustomerRow, {
            "external_id": external_id, "first_name": first_name, "phone": phone,
            "email": email, "locale": locale, "timezone": timezone,
            "attributes": dict(attributes or {}), "opted_out_at": None, "created_at": now,
            "updated_at": now, "erased_at": None})

    def bind(self, customer_id: int, channel: str, address: str, *, now: datetime) -> None:
        """Bind (channel, address) to the customer, taking it over from another one if need
        be (a deep link names the customer a chat belongs to), and mark it reachable again:
        someone who writes to us can be written to."""
        connection = self.connection
        connection.execute(_BIND[connection.dialect.name], {
            "customer_id": customer_id, "channel": channel, "address": address,
            "reachable": True, "created_at": now})

    def upsert_identity(self, customer_id: int, channel: str, address: str, *,
                        now: datetime) -> IdentityRow:
        """`bind`, and the identity as it is now."""
        self.bind(customer_id, channel, address, now=now)
        return self.session.scalars(
            select(IdentityRow)
            .where(IdentityRow.channel == channel, IdentityRow.address == address)
            .execution_options(populate_existing=True)).one()

    def identity(self, channel: str, address: str) -> IdentityRow | None:
        return self.session.scalar(
            select(IdentityRow).where(IdentityRow.channel == channel,
                                      IdentityRow.address == address))

    def mark_unreachable(self, channel: str, address: str, reason: str) -> bool:
        """Stop writing to this address (Telegram: the customer blocked the bot); the
        identity stays. False if there is no such identity."""
        result = self.connection.execute(_UNREACHABLE, {
            "k_channel": channel, "k_address": address, "reachable": False,
            "unreachable_reason": reason})
        return bool(result.rowcount)

    def touch_inbound(self, channel: str, address: str, now: datetime) -> None:
        """The customer wrote to us here now: a channel's messaging window opens."""
        self.connection.execute(_UNREACHABLE, {"k_channel": channel, "k_address": address,
                                               "last_inbound_at": now})

    def erase(self, customer: CustomerRow, now: datetime) -> Erasure:
        """Remove the customer's personal data and texts, keep the anonymous scores
        (bot/services/admin.py says what goes and what stays); erasing again changes
        nothing and answers with the first erasure's time. Then storage.erasure.scrub."""
        session, who = self.session, customer.id
        again = customer.erased_at is not None
        customer.first_name = customer.phone = customer.email = customer.timezone = None
        customer.attributes = {}
        customer.erased_at = customer.erased_at or now
        customer.opted_out_at = customer.opted_out_at or now
        customer.updated_at = now
        session.execute(delete(IdentityRow).where(IdentityRow.customer_id == who))
        answers = session.execute(
            update(AnswerRow).where(AnswerRow.customer_id == who).values(text=None))
        alerts = session.execute(
            update(AlertRow).where(AlertRow.customer_id == who).values(notes=[]))
        dialogues = session.scalars(
            select(DialogueRow).where(DialogueRow.customer_id == who)).all()
        for dialogue in dialogues:
            state = {**dialogue.state, "values": {}, "context": {}, "customer": {}}
            changes: dict[str, Any] = {"state": state}
            if dialogue.status == DialogueStatus.ACTIVE:
                changes["status"] = DialogueStatus.ABANDONED
            # Through save: a turn of this dialogue under way fails as stale, not undoing it.
            Dialogues(session).save(dialogue, now, changes)
        triggers = session.execute(
            select(TriggerRow.id, TriggerRow.payload)
            .join(DeliveryRow, DeliveryRow.trigger_id == TriggerRow.id)
            .where(DeliveryRow.customer_id == who)).all()
        for trigger_id, payload in triggers:
            session.execute(update(TriggerRow).where(TriggerRow.id == trigger_id).values(
                payload={"survey": payload.get("survey"),
                         "idempotency_key": payload.get("idempotency_key"),
                         "customer": {"external_id": customer.external_id}}))
        session.execute(
            update(DeliveryRow).where(DeliveryRow.customer_id == who,
                                      DeliveryRow.status == DeliveryStatus.SCHEDULED)
            .values(status=DeliveryStatus.SUPPRESSED, reason="erased"))
        deliveries = session.execute(
            update(DeliveryRow).where(DeliveryRow.customer_id == who)
            .values(token=None, context={}, message_id=None, last_error=None,
                    remind_at=None, updated_at=now))
        session.execute(delete(OutboxRow).where(OutboxRow.key == f"customer:{who}"))
        return Erasure(customer.erased_at, again, _count(answers), len(dialogues),
                       _count(deliveries), _count(alerts))


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
