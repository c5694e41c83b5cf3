"""Deliveries: one row per survey due to a customer (from a trigger or a campaign run), the
source of truth for what the dispatcher sends. Also the triggers that create them, and the
dispatcher's side of the customers and dialogues it sends to.

Accepting a trigger or claiming a batch is one Database.write: one thread hop on SQLite."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage.models import (
    CustomerRow,
    DeliveryRow,
    DeliveryStatus,
    DialogueRow,
    DialogueStatus,
    IdentityRow,
    TriggerRow,
)
from storage.repositories.base import Repository

# A delivery the customer may still answer.
OPEN = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING, DeliveryStatus.SENT,
        DeliveryStatus.REMINDED, DeliveryStatus.ANSWERED)
# Waiting for the customer's answer: a reminder or the expiry may still come.
AWAITING = (DeliveryStatus.SENT, DeliveryStatus.REMINDED, DeliveryStatus.ANSWERED)
# What counts as "surveyed" for the anti-fatigue clock: anything not refused or failed.
SURVEYED = tuple(s for s in DeliveryStatus
                 if s not in (DeliveryStatus.SUPPRESSED, DeliveryStatus.FAILED))

_triggers: Table = TriggerRow.__table__  # type: ignore[assignment]
_deliveries: Table = DeliveryRow.__table__  # type: ignore[assignment]
_customers: Table = CustomerRow.__table__  # type: ignore[assignment]
_identities: Table = IdentityRow.__table__  # type: ignore[assignment]
_sessions: Table = DialogueRow.__table__  # type: ignore[assignment]


class Contact(NamedTuple):
    """A customer as the policy sees them."""

    id: int
    opted_out: bool
    timezone: str | None
    locale: str | None
    erased: bool = False  # their personal data was erased: store none of it again


# The trigger path's statements, built once (storage/rollups.py says why: building and
# keying a statement costs more CPU than SQLite takes to run it). Per dialect where they
# say ON CONFLICT; the columns an INSERT or UPDATE sets come from its parameters.
def _per_dialect(build: Callable[[Any], Any]) -> dict[str, Any]:
    return {"postgresql": build(postgresql.insert), "sqlite": build(sqlite.insert)}


_CUSTOMER_COLUMNS = (_customers.c.id, _customers.c.opted_out_at, _customers.c.timezone,
                     _customers.c.locale, _customers.c.attributes, _customers.c.erased_at)
_CLAIM_TRIGGER = _per_dialect(lambda insert: insert(_triggers).on_conflict_do_nothing(
    index_elements=["idempotency_key"]).returning(_triggers.c.id))
_TRIGGER_RECORD = select(_triggers.c.payload, _triggers.c.response).where(
    _triggers.c.idempotency_key == bindparam("k_key"))
_TRIGGER_RESPONSE = update(_triggers).where(_triggers.c.id == bindparam("k_id"))
_NEW_CUSTOMER = _per_dialect(lambda insert: insert(_customers).on_conflict_do_nothing(
    index_elements=["external_id"]).returning(*_CUSTOMER_COLUMNS))
_CUSTOMER = select(*_CUSTOMER_COLUMNS).where(_customers.c.external_id == bindparam("k_ext"))
_CHANGE_CUSTOMER = update(_customers).where(_customers.c.id == bindparam("k_id"))


def _bind(insert: Any) -> Any:
    statement = insert(_identities)
    return statement.on_conflict_do_update(
        index_elements=["channel", "address"],
        set_={"customer_id": statement.excluded.customer_id},
        where=_identities.c.customer_id != statement.excluded.customer_id)


_BIND_IDENTITY = _per_dialect(_bind)
_REACHABLE = (select(_identities.c.channel, _identities.c.address)
              .where(_identities.c.customer_id == bindparam("k_customer"),
                     _identities.c.reachable)
              .order_by(_identities.c.id))
_SURVEYED = (select(_deliveries.c.id)
             .where(_deliveries.c.customer_id == bindparam("k_customer"),
                    _deliveries.c.due_at > bindparam("k_since"),
                    _deliveries.c.status.in_(SURVEYED)).limit(1))
_SURVEYED_THIS = _SURVEYED.where(_deliveries.c.survey_id == bindparam("k_survey"))
_INSERT_DELIVERY = _deliveries.insert().returning(_deliveries.c.id)


_CONTACTS = select(_customers.c.id, _customers.c.opted_out_at, _customers.c.locale,
                   _customers.c.timezone, _customers.c.first_name, _customers.c.attributes)
_ADDRESSES = (select(_identities.c.customer_id, _identities.c.channel, _identities.c.address)
              .where(_identities.c.reachable).order_by(_identities.c.id))
_OPEN_DIALOGUES = (select(_sessions.c.id, _sessions.c.customer_id, _sessions.c.channel,
                          _sessions.c.delivery_id, _sessions.c.state)
                   .where(_sessions.c.status == DialogueStatus.ACTIVE)
                   .order_by(_sessions.c.started_at, _sessions.c.id))
_DELIVERY_DIALOGUE = (select(_sessions.c.id, _sessions.c.channel, _sessions.c.state)
                      .where(_sessions.c.delivery_id == bindparam("k_id"),
                             _sessions.c.status == DialogueStatus.ACTIVE)
                      .order_by(_sessions.c.id.desc()).limit(1))
# Built once: a batch runs them for each of its deliveries.
_CHANGE = update(_deliveries).where(_deliveries.c.id == bindparam("k_id"))
_FINISH = _CHANGE.where(_deliveries.c.status == DeliveryStatus.SENDING)
# Built once (storage/rollups.py says why): a reply to a delivery's survey runs it.
_ANSWERED = (update(_deliveries)
             .where(_deliveries.c.id == bindparam("k_id"),
                    _deliveries.c.status.in_((*OPEN, DeliveryStatus.EXPIRED)),
                    _deliveries.c.status != bindparam("k_status"))
             .values(status=bindparam("k_status"), remind_at=None,
                     updated_at=bindparam("k_now")))
# Built once (parameters k_token; k_customer_id and k_channel).
_BY_TOKEN = select(DeliveryRow).where(DeliveryRow.token == bindparam("k_token"))
_BY_MESSAGE = (select(DeliveryRow)
               .where(DeliveryRow.sent_channel == bindparam("k_channel"),
                      DeliveryRow.message_id == bindparam("k_message"))
               .order_by(DeliveryRow.id.desc()).limit(1))
_INBOUND = select(_identities.c.customer_id, _identities.c.channel,
                  _identities.c.last_inbound_at).where(_identities.c.reachable)
_PENDING_FOR = (select(DeliveryRow)
                .where(DeliveryRow.customer_id == bindparam("k_customer_id"),
                       or_(DeliveryRow.channel == bindparam("k_channel"),
                           DeliveryRow.sent_channel == bindparam("k_channel")),
                       DeliveryRow.status.in_(OPEN))
                .order_by(DeliveryRow.due_at.desc(), DeliveryRow.id.desc()).limit(1))


class Deliveries(Repository):
    """Surveys due to a customer: one row per (trigger or campaign, customer)."""

    # -- triggers ------------------------------------------------------------------------

    def claim_trigger(self, source: str, key: str, payload: Mapping[str, Any],
                      now: datetime) -> int | None:
        """Record a trigger; None if its idempotency key was recorded before (on PostgreSQL
        a concurrent insert of the same key waits for the first transaction, then yields)."""
        connection = self.connection
        return connection.execute(_CLAIM_TRIGGER[connection.dialect.name], {
            "source": source, "idempotency_key": key, "payload": dict(payload),
            "received_at": now}).scalar()

    def trigger_record(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request a recorded trigger came with, and what it was answered."""
        row = self.connection.execute(_TRIGGER_RECORD, {"k_key": key}).one()
        return row.payload, row.response

    def set_trigger_response(self, trigger_id: int, response: Mapping[str, Any]) -> None:
        self.connection.execute(_TRIGGER_RESPONSE, {"k_id": trigger_id,
                                                    "response": dict(response)})

    def upsert_customer(self, external_id: str, values: Mapping[str, Any],
                        attributes: Mapping[str, Any], now: datetime) -> Contact:
        """The customer with this external id, created or updated: given fields replace the
        stored ones, attributes are merged key by key."""
        connection = self.connection
        given = {k: v for k, v in values.items() if v is not None}
        inserted = connection.execute(_NEW_CUSTOMER[connection.dialect.name], {
            "external_id": external_id, "attributes": dict(attributes), "created_at": now,
            "updated_at": now, **given}).first()
        if inserted is not None:
            return Contact(inserted.id, False, inserted.timezone, inserted.locale)
        row = connection.execute(_CUSTOMER, {"k_ext": external_id}).one()
        if row.erased_at is not None:
            return Contact(row.id, True, row.timezone, row.locale, erased=True)
        merged = {**(row.attributes or {}), **attributes}
        changes = {k: v for k, v in given.items() if getattr(row, k, None) != v}
        if merged != (row.attributes or {}):
            changes["attributes"] = merged
        if changes:
            connection.execute(_CHANGE_CUSTOMER, {"k_id": row.id, **changes, "updated_at": now})
        return Contact(row.id, row.opted_out_at is not None,
                       given.get("timezone", row.timezone), given.get("locale", row.locale))

    def bind_identity(self, customer_id: int, channel: str, address: str,
                      now: datetime) -> None:
        """(channel, address) belongs to this customer from now on; its reachability stays
        as it was (a chat that blocked the bot is not reopened by a trigger)."""
        connection = self.connection
        connection.execute(_BIND_IDENTITY[connection.dialect.name], {
            "customer_id": customer_id, "channel": channel, "address": address,
            "reachable": True, "created_at": now})

    def reachable(self, customer_id: int) -> dict[str, str]:
        """The customer's reachable addresses, by channel (the newest one of each)."""
        rows = self.connection.execute(_REACHABLE, {"k_customer": customer_id}).all()
        return {row.channel: row.address for row in rows}

    def surveyed_since(self, customer_id: int, since: datetime,
                       survey_id: str | None) -> bool:
        """Whether the customer had a survey (this one, or any when None) due since
        `since`: the anti-fatigue clock, one per customer across every channel."""
        if survey_id is None:
            found = self.connection.execute(_SURVEYED, {"k_customer": customer_id,
                                                        "k_since": since})
        else:
            found = self.connection.execute(_SURVEYED_THIS, {
                "k_customer": customer_id, "k_since": since, "k_survey": survey_id})
        return found.first() is not None

    def insert_delivery(self, values: Mapping[str, Any]) -> int:
        return int(self.connection.execute(_INSERT_DELIVERY, dict(values)).scalar_one())

    # -- reading -------------------------------------------------------------------------

    def get(self, delivery_id: int) -> DeliveryRow | None:
        return self.session.get(DeliveryRow, delivery_id)

    def by_token(self, token: str) -> DeliveryRow | None:
        return self.session.scalar(_BY_TOKEN, {"k_token": token})

    def by_message(self, channel: str, message_id: str) -> DeliveryRow | None:
        """The delivery whose message this is, as the channel's send named it."""
        return self.session.scalar(_BY_MESSAGE, {"k_channel": channel,
                                                 "k_message": message_id})

    def pending_for(self, customer_id: int, channel: str) -> DeliveryRow | None:
        """The customer's latest delivery in this channel that is still open to answer."""
        return self.session.scalar(_PENDING_FOR, {"k_customer_id": customer_id,
                                                  "k_channel": channel})

    def search(self, *, customer: str | None = None, status: str | None = None,
               survey_id: str | None = None, after: int = 0, limit: int = 100
               ) -> Sequence[DeliveryRow]:
        """Deliveries by id, from `after` on, optionally one customer's (by external id),
        status or survey."""
        query = select(DeliveryRow).where(DeliveryRow.id > after)
        if customer is not None:
            query = query.where(DeliveryRow.customer_id == select(_customers.c.id).where(
                _customers.c.external_id == customer).scalar_subquery())
        if status is not None:
            query = query.where(DeliveryRow.status == status)
        if survey_id is not None:
            query = query.where(DeliveryRow.survey_id == survey_id)
        return self.session.scalars(query.order_by(DeliveryRow.id).limit(limit)).all()

    # -- the dispatcher ------------------------------------------------------------------

    def claim_due(self, now: datetime, limit: int) -> list[DeliveryRow]:
        """Take up to `limit` due deliveries for sending: status -> sending (attempts count
        the failed sends, recorded with the outcome).
        SKIP LOCKED: two processes claiming at once never take the same delivery; SQLite
        (which ignores it) serializes whole transactions with BEGIN IMMEDIATE instead."""
        rows = self._claim(
            (_deliveries.c.status == DeliveryStatus.SCHEDULED, _deliveries.c.due_at <= now),
            (_deliveries.c.due_at, _deliveries.c.id), limit,
            {"status": DeliveryStatus.SENDING, "updated_at": now})
        return sorted(rows, key=lambda row: (row.due_at, row.id))

    def recover_stuck(self, before: datetime, now: datetime) -> int:
        """Deliveries left in `sending` by a process that died: those with a message id went
        out (only the bookkeeping was lost); the others go back to the queue."""
        stuck = and_(_deliveries.c.status == DeliveryStatus.SENDING,
                     _deliveries.c.updated_at < before)
        sent = self.connection.execute(
            update(_deliveries).where(stuck, _deliveries.c.message_id.is_not(None))
            .values(status=DeliveryStatus.SENT, updated_at=now))
        queued = self.connection.execute(
            update(_deliveries).where(stuck, _deliveries.c.message_id.is_(None))
            .values(status=DeliveryStatus.SCHEDULED, due_at=now, updated_at=now))
        return int(sent.rowcount or 0) + int(queued.rowcount or 0)

    def finish_sending(self, delivery_id: int, values: Mapping[str, Any],
                       now: datetime) -> bool:
        """Record a claimed delivery's outcome; False if it was not ours any more
        (recovered by another process after a timeout)."""
        result = self.connection.execute(_FINISH, {**values, "updated_at": now,
                                                   "k_id": delivery_id})
        return bool(result.rowcount)

    def set_error(self, delivery_id: int, error: str) -> None:
        self.connection.execute(_CHANGE, {"k_id": delivery_id, "last_error": error})

    def remind_later(self, delivery_id: int, at: datetime, now: datetime) -> None:
        """A claimed reminder put off until `at`: the delivery is back to sent."""
        self.connection.execute(_CHANGE, {"k_id": delivery_id, "status": DeliveryStatus.SENT,
                                          "remind_at": at, "updated_at": now})

    def contacts(self, customer_ids: Collection[int]) -> dict[int, Any]:
        """The customers a batch goes to, by id: whether they opted out, their locale, time
        zone, first name and attributes."""
        rows = self.connection.execute(_CONTACTS.where(_customers.c.id.in_(customer_ids)))
        return {row.id: row for row in rows}

    def addresses(self, customer_ids: Collection[int]) -> dict[int, dict[str, str]]:
        """Each customer's reachable addresses by channel (the newest one of each)."""
        found: dict[int, dict[str, str]] = {}
        for row in self.connection.execute(
                _ADDRESSES.where(_identities.c.customer_id.in_(customer_ids))):
            found.setdefault(row.customer_id, {})[row.channel] = row.address
        return found

    def templated_customers(self, channel: str, since: datetime) -> set[int]:
        """The customers sent a template through `channel` since `since`."""
        return set(self.connection.execute(
            select(_deliveries.c.customer_id).distinct().where(
                _deliveries.c.sent_channel == channel, _deliveries.c.templated,
                _deliveries.c.sent_at >= since)).scalars())

    def last_inbound(self, customer_ids: Collection[int], channels: Collection[str]
                     ) -> dict[tuple[int, str], datetime]:
        """When each customer last wrote to us in each of these channels (those with a
        messaging window), by (customer, channel); a customer who never did is absent."""
        found: dict[tuple[int, str], datetime] = {}
        for row in self.connection.execute(_INBOUND.where(
                _identities.c.customer_id.in_(customer_ids),
                _identities.c.channel.in_(channels))):
            key = (row.customer_id, row.channel)
            if row.last_inbound_at is not None and (key not in found
                                                    or found[key] < row.last_inbound_at):
                found[key] = row.last_inbound_at
        return found

    def open_dialogues(self, customer_ids: Collection[int]) -> dict[tuple[int, str], Any]:
        """The customers' active dialogues by (customer, channel): id, delivery_id, state
        (the newest, should a channel have several)."""
        rows = self.connection.execute(
            _OPEN_DIALOGUES.where(_sessions.c.customer_id.in_(customer_ids)))
        return {(row.customer_id, row.channel): row for row in rows}

    def dialogue_of(self, delivery_id: int) -> Any:
        """The delivery's active dialogue (id, channel, state), the newest."""
        return self.connection.execute(_DELIVERY_DIALOGUE, {"k_id": delivery_id}).first()

    def due_reminders(self, now: datetime, limit: int) -> list[DeliveryRow]:
        """Sent, unanswered deliveries whose reminder is due: claimed (remind_at cleared)
        in the same statement, so the reminder goes once."""
        return self._claim(
            (_deliveries.c.status == DeliveryStatus.SENT, _deliveries.c.remind_at <= now),
            (_deliveries.c.remind_at,), limit,
            {"status": DeliveryStatus.REMINDED, "remind_at": None, "updated_at": now})

    def _claim(self, where: Sequence[ColumnElement[bool]],
               order: Sequence[ColumnElement[Any]], limit: int,
               values: Mapping[str, Any]) -> list[DeliveryRow]:
        """Up to `limit` deliveries matching `where`, in `order`, changed by `values` and
        returned as changed. SKIP LOCKED: two processes claiming at once never take the
        same one; SQLite (which ignores it) serializes whole transactions instead."""
        ids = list(self.connection.execute(
            select(_deliveries.c.id).where(*where).order_by(*order).limit(limit)
            .with_for_update(skip_locked=True)).scalars())
        if not ids:
            return []
        rows = self.connection.execute(
            update(_deliveries).where(_deliveries.c.id.in_(ids)).values(**values)
            .returning(*_deliveries.c)).all()
        return [DeliveryRow(**row._mapping) for row in rows]

    def expire_due(self, now: datetime) -> int:
        """Deliveries past their expiry: expired, and their open dialogues closed."""
        ids = list(self.connection.execute(
            select(_deliveries.c.id).where(_deliveries.c.status.in_(AWAITING),
                                           _deliveries.c.expires_at <= now)).scalars())
        if not ids:
            return 0
        self.connection.execute(update(_deliveries).where(_deliveries.c.id.in_(ids))
                                .values(status=DeliveryStatus.EXPIRED, updated_at=now))
        self.connection.execute(
            update(_sessions).where(_sessions.c.delivery_id.in_(ids),
                                    _sessions.c.status == DialogueStatus.ACTIVE)
            .values(status=DialogueStatus.EXPIRED, updated_at=now,
                    revision=_sessions.c.revision + 1))
        return len(ids)

    # -- replies -------------------------------------------------------------------------

    def mark_answered(self, delivery_id: int, finished: bool, now: datetime) -> None:
        """The customer answered (finished: completed) the delivery's survey."""
        status = DeliveryStatus.COMPLETED if finished else DeliveryStatus.ANSWERED
        self.connection.execute(_ANSWERED, {"k_id": delivery_id, "k_status": status,
                                            "k_now": now})
