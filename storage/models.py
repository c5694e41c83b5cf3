"""The tables, as SQLAlchemy 2 typed declarative models. Portable types only: the same
models serve SQLite and PostgreSQL, and migrations/ must produce exactly this schema."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conversations.engine import DialogueState

# Named by the models, and imported from here by storage's other modules.
from conversations.statuses import AlertStatus as AlertStatus
from conversations.statuses import Channel as Channel
from conversations.statuses import DeliveryStatus as DeliveryStatus
from conversations.statuses import DialogueStatus as DialogueStatus
from conversations.statuses import Respondent as Respondent

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL ids may outgrow 32 bits.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDict = dict[str, Any]


class Timestamp(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend: SQLite keeps no offset, so values are
    normalized to UTC on the way in and marked UTC on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class NulFree(TypeDecorator[str]):
    """Text without NUL characters, on every backend: PostgreSQL can neither store nor
    compare one (a customer's answer with one failed as a whole), and SQLite keeps the
    same text so both hold the same data. Nothing anyone reads is lost with it."""

    impl = String()
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.replace("\x00", "") if value is not None and "\x00" in value else value


class LongText(NulFree):
    impl = Text()
    cache_ok = True


class Base(DeclarativeBase):
    # Named constraints: Alembic's batch mode on SQLite can only drop what has a name.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: Timestamp(),
        date: Date(),
        str: NulFree(),
        JsonDict: JSON(none_as_null=True),
        list[str]: JSON(none_as_null=True),
        list[JsonDict]: JSON(none_as_null=True),
    }


class CustomerRow(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(unique=True)
    first_name: Mapped[str | None]
    phone: Mapped[str | None]
    email: Mapped[str | None]
    locale: Mapped[str | None]
    timezone: Mapped[str | None]
    attributes: Mapped[JsonDict] = mapped_column(default=dict)
    opted_out_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]


class IdentityRow(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    channel: Mapped[str]
    address: Mapped[str]
    reachable: Mapped[bool] = mapped_column(default=True)
    unreachable_reason: Mapped[str | None]
    created_at: Mapped[datetime]
    # The customer's last message here, kept for channels with a messaging window only
    # (bot.services.channels.Window).
    last_inbound_at: Mapped[datetime | None]


class ScriptRow(Base):
    __tablename__ = "scripts"
    __table_args__ = (UniqueConstraint("survey_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    survey_id: Mapped[str]
    version: Mapped[int]
    title: Mapped[JsonDict]
    body: Mapped[JsonDict]  # the validated script as data (script_to_data)
    source: Mapped[str] = mapped_column(LongText())  # the file as written, comments and all
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of the body without version
    created_by: Mapped[str]
    created_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(default=False)


class TriggerRow(Base):
    __tablename__ = "triggers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str]
    idempotency_key: Mapped[str] = mapped_column(unique=True)
    payload: Mapped[JsonDict]
    received_at: Mapped[datetime]
    # What the first request was answered: the same key again gets exactly this.
    response: Mapped[JsonDict | None]


class CampaignRow(Base):
    """A recurring survey: a script, a segment of customers and a cron schedule."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    survey_id: Mapped[str]
    segment: Mapped[JsonDict] = mapped_column(default=dict)  # attribute -> value(s)
    channel: Mapped[str | None]
    schedule: Mapped[str]  # crontab: "0 10 * * 1"
    timezone: Mapped[str] = mapped_column(default="UTC")
    batch_size: Mapped[int] = mapped_column(default=500)
    active: Mapped[bool] = mapped_column(default=True)
    source: Mapped[str] = mapped_column(default="api")  # "api" or the file it came from
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CampaignRunRow(Base):
    """One firing of a campaign's schedule, worked through in batches: `cursor` is the last
    customer id done, committed with that batch's deliveries, so a run survives a crash and
    two processes never start the same one (unique per campaign and time)."""

    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign_id", "scheduled_for"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id"))
    scheduled_for: Mapped[datetime]
    status: Mapped[str] = mapped_column(default="running")  # running | done
    cursor: Mapped[int] = mapped_column(BigId, default=0)
    scheduled: Mapped[int] = mapped_column(default=0)
    suppressed: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class DeliveryRow(Base):
    __tablename__ = "deliveries"
    # ix_deliveries_rates holds every column the metrics' response rate reads, so it is
    # counted without visiting a row (bot.services.metrics._rates; migration 0006).
    __table_args__ = (Index(None, "status", "due_at"), Index(None, "status", "updated_at"),
                      Index("ix_deliveries_rates", "survey_id", "status", "due_at",
                            "sent_channel", "channel"),
                      # A receipt (a bounce, a delivery report) finds its delivery by the
                      # message id the channel gave it (migration 0011).
                      Index("ix_deliveries_message", "sent_channel", "message_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    survey_id: Mapped[str]
    script_version: Mapped[int | None]
    trigger_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("triggers.id"))
    campaign_run_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("campaign_runs.id"))
    channel: Mapped[str]  # the first channel planned (the one asked for, or the best)
    # The channels named for it (a trigger's or its script's `channels`), the only ones it
    # may go out in, in order; None: every channel sent on (migration 0013).
    channels: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(default=DeliveryStatus.SCHEDULED)
    reason: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(LongText())
    context: Mapped[JsonDict] = mapped_column(default=dict)
    token: Mapped[str | None] = mapped_column(unique=True)
    message_id: Mapped[str | None]
    sent_channel: Mapped[str | None]  # where it went, after any fallback
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]  # the channel's receipt said so, where it has one
    # Sent as the channel's template, outside its messaging window (WhatsApp counts these
    # against the number's daily limit of customers).
    templated: Mapped[bool] = mapped_column(default=False, server_default=false())
    remind_at: Mapped[datetime | None]  # cleared once reminded
    expires_at: Mapped[datetime | None]


class DialogueRow(Base):
    """A dialogue's durable state; `revision` is its optimistic lock."""

    __tablename__ = "sessions"
    # ix_sessions_rates holds every column the metrics' completion rate and drop-off read,
    # so they are counted without visiting a row (bot.services.metrics._rates; migration
    # 0006). A turn that moves current_step updates it: one index entry, against a read
    # that visited every dialogue of the period.
    __table_args__ = (Index(None, "customer_id", "channel", "status"),
                      Index("ix_sessions_rates", "survey_id", "respondent", "status",
                            "current_step", "started_at", "channel"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Indexed: pages, e-mail links and deep links find a dialogue by its delivery.
    delivery_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("deliveries.id"),
                                                    index=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"))
    channel: Mapped[str]
    survey_id: Mapped[str]
    script_version: Mapped[int]
    current_step: Mapped[str | None]
    respondent: Mapped[str] = mapped_column(default=Respondent.KNOWN)
    state: Mapped[JsonDict]  # DialogueState.to_json()
    status: Mapped[str] = mapped_column(default=DialogueStatus.ACTIVE)
    revision: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]

    def dialogue_state(self) -> DialogueState:
        return DialogueState.from_json(self.state)


class AnswerRow(Base):
    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("session_id", "step_id"),
        Index(None, "survey_id", "answered_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(BigId, ForeignKey("sessions.id"))
    customer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    survey_id: Mapped[str]
    script_version: Mapped[int]
    step_id: Mapped[str]  # the engine's answer key: "score", "loyalty.switch"
    metric: Mapped[str]
    score: Mapped[int | None]
    choices: Mapped[list[str] | None]
    text: Mapped[str | None] = mapped_column(LongText())
    channel: Mapped[str]
    segment: Mapped[str] = mapped_column(default="")
    respondent: Mapped[str] = mapped_column(default=Respondent.KNOWN)  # its dialogue's
    context: Mapped[JsonDict] = mapped_column(default=dict)
    alert: Mapped[bool] = mapped_column(default=False)
    answered_at: Mapped[datetime]


class RollupRow(Base):
    """Answer counts per day and bucket, kept in step with answers so reports never scan
    them. A bucket is a score ("9", yes/no as "1"/"0"), an option id ("price") or "*" for
    a text or a choice answer as a whole (storage/rollups.py)."""

    __tablename__ = "rollups"
    # On SQLite the rows live in the primary key's b-tree (migration 0006): a report reads
    # `count` where it finds the key, instead of looking each row up in a table beside it.
    __table_args__ = ({"sqlite_with_rowid": False},)

    survey_id: Mapped[str] = mapped_column(primary_key=True)
    step_id: Mapped[str] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(primary_key=True)
    segment: Mapped[str] = mapped_column(primary_key=True)
    respondent: Mapped[str] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(primary_key=True)
    metric: Mapped[str]
    count: Mapped[int] = mapped_column(default=0)


class AlertRow(Base):
    __tablename__ = "alerts"
    # The anonymous answers' alert limit counts a survey's alerts of the last hour.
    __table_args__ = (Index(None, "survey_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(BigId, ForeignKey("sessions.id"), index=True)
    # SET NULL: a customer may go "back" and change the answer; the alert stays for a human.
    answer_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("answers.id", ondelete="SET NULL"))
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id"), index=True)
    survey_id: Mapped[str]
    step_id: Mapped[str]
    score: Mapped[int | None]
    status: Mapped[str] = mapped_column(default=AlertStatus.OPEN, index=True)
    owner: Mapped[str | None]
    notes: Mapped[list[JsonDict]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    message_id: Mapped[str | None]  # the alert's message in the admin chat
    # When it was re-sent to the admin chat because nobody took it within the script's
    # alert_sla: once only.
    overdue_at: Mapped[datetime | None]


class ContextRollupRow(Base):
    """RollupRow again, per trigger-context key and value (agent, call type, shop): an answer
    is counted once under each key of its context, so a report by agent never scans
    answers either."""

    __tablename__ = "context_rollups"
    __table_args__ = ({"sqlite_with_rowid": False},)  # as rollups

    survey_id: Mapped[str] = mapped_column(primary_key=True)
    step_id: Mapped[str] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(primary_key=True)
    segment: Mapped[str] = mapped_column(primary_key=True)
    respondent: Mapped[str] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(primary_key=True)
    metric: Mapped[str]
    count: Mapped[int] = mapped_column(default=0)


class OutboxRow(Base):
    """A transaction's side effects, written in it and carried out after its commit, with
    retries: a receiver that is down never blocks or loses a dialogue's event. `sink` says
    who carries it out (webhook: OUTBOUND_WEBHOOK_URL; team: the team chat); `key` orders
    delivery (one customer's events go out in the order they happened)."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "delivered_at", "due_at"),
                      Index(None, "sink", "delivered_at", "due_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sink: Mapped[str] = mapped_column(default="webhook", server_default="webhook")
    # webhook: answer.created, session.completed, alert.raised, alert.resolved;
    # team: alert.raised, alert.comment
    event: Mapped[str]
    key: Mapped[str]
    payload: Mapped[JsonDict]
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]  # the next attempt
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(LongText())
    delivered_at: Mapped[datetime | None]
    # Set aside: it could not be sent or its outcome recorded (a poison). Never sent again,
    # and no longer holding back its key's later events.
    failed_at: Mapped[datetime | None]


class ChannelEventRow(Base):
    """Events a channel may deliver twice (Telegram updates), by their id there: written in
    the transaction that applies the event, so a redelivered one changes nothing. Kept
    for days, not forever: Telegram re-numbers updates after a quiet week."""

    __tablename__ = "channel_events"

    channel: Mapped[str] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str]
    action: Mapped[str]
    target: Mapped[str]
    details: Mapped[JsonDict] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(index=True)


class LimitRow(Base):
    """Per-address counts for a minute (bot/ratelimit.py): the failed-attempts budget and
    the anonymous rate, shared by every process on the database. `minute` is the minute's
    first second (Unix time) and leads the key, so pruning past minutes is a range."""

    __tablename__ = "limits"
    __table_args__ = ({"sqlite_with_rowid": False},)  # looked up only by its key

    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    scope: Mapped[str] = mapped_column(primary_key=True)  # "failed" or "anonymous"
    address: Mapped[str] = mapped_column(primary_key=True)
    count: Mapped[int]


class AdminDialogueRow(Base):
    """A dashboard login: its cookie carries the id, signed, and every request reads this
    row by it, so logging out (`revoked_at`) ends that session on the server, not only in
    that browser. Rows past the session's age are deleted at the next login."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(primary_key=True)  # 192 random bits
    who: Mapped[str]  # the name typed at login
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
