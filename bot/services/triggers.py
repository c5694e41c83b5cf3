"""Triggers: another system says an interaction happened; Otklik records it once, decides
whether and when to ask (opt-out, the anti-fatigue clock, quiet hours, a reachable
channel) and schedules a delivery. Campaign runs take the same decisions."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.services.channels import channel_plan
from bot.services.errors import ServiceError
from bot.services.scripts import ScriptCache
from conversations.conditions import Scalar
from conversations.policy import next_allowed
from conversations.script import Script
from storage.models import DeliveryRow, DeliveryStatus
from storage.repositories.deliveries import Contact
from storage.uow import Database, Store

# Where a survey can go, best first: a messenger, then e-mail (which carries the web link).
log = logging.getLogger(__name__)
# A delivery nothing sends: the caller (a help desk, a newcomer) hands its survey link on.
# It is sent as it is made, so it needs no address, and neither waits nor is reminded.
LINK = "link"


class TriggerError(ServiceError):
    """Root of what a trigger is refused for; the API answers each with a 4xx naming the
    field at fault."""

    field: str = ""


class UnknownSurvey(TriggerError):
    field = "survey"


class KeyReused(TriggerError):
    """The idempotency key came before with another body."""

    field = "idempotency_key"


@dataclass(frozen=True, slots=True)
class CustomerIn:
    external_id: str
    telegram_id: int | None = None
    email: str | None = None
    phone: str | None = None  # E.164
    first_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    attributes: Mapping[str, Scalar] = field(default_factory=dict)

    def addresses(self) -> dict[str, str]:
        # WhatsApp writes to the number's digits (Meta's wa_id: E.164 without the "+").
        found = {"telegram": str(self.telegram_id) if self.telegram_id else None,
                 "email": self.email, "phone": self.phone, "sms": self.phone,
                 "whatsapp": self.phone.removeprefix("+") if self.phone else None}
        return {channel: address for channel, address in found.items() if address}


@dataclass(frozen=True, slots=True)
class Trigger:
    survey: str
    idempotency_key: str
    customer: CustomerIn
    payload: Mapping[str, Any]  # the request as sent, kept with the trigger
    context: Mapping[str, Scalar] = field(default_factory=dict)
    channel: str | None = None
    delay: timedelta | None = None
    source: str = "api"
    channels: Sequence[str] | None = None  # only these, in this order (else the script's)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy says of one survey for one customer."""

    status: DeliveryStatus  # SCHEDULED or SUPPRESSED; SENT for a link (LINK)
    reason: str | None  # why suppressed, or "quiet_hours" when moved
    due_at: datetime
    channel: str
    channels: Sequence[str] | None = None  # the order named (trigger, script), kept with it


@dataclass(frozen=True, slots=True)
class Accepted:
    trigger_id: int
    delivery_id: int
    status: str
    reason: str | None
    due_at: datetime
    replay: bool = False  # the same idempotency key again: the first answer
    # The delivery's token, when it is scheduled or sent as a link: its survey can be
    # answered at its page.
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"trigger_id": self.trigger_id, "delivery_id": self.delivery_id,
                "status": self.status, "reason": self.reason,
                "due_at": self.due_at.isoformat(), "token": self.token}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replay: bool) -> Accepted:
        return cls(int(data["trigger_id"]), int(data["delivery_id"]), str(data["status"]),
                   data.get("reason"), datetime.fromisoformat(data["due_at"]), replay,
                   data.get("token"))


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """Settings that apply to every survey, besides each script's own policy."""

    # The channels this process sends on, in the order a delivery tries them.
    channels: Sequence[str] = ("telegram",)
    throttle_days: int = 0  # at most one survey per customer in this many days, all surveys


TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")  # new_token's: 192 bits


def new_token() -> str:
    """A delivery's secret: 192 bits, URL- and deep-link-safe (Telegram's /start payload
    takes 64 characters of [A-Za-z0-9_-]; this is 32)."""
    return secrets.token_urlsafe(24)


def decide(store: Store, contact: Contact, script: Script, policy: SendPolicy,
           *, asked: str | None, delay: timedelta | None, now: datetime,
           named: Sequence[str] | None = None) -> Decision:
    """Whether and when: opted out, surveyed too recently, no reachable channel, else due
    after the delay, moved out of the quiet hours in the customer's time zone. `named`:
    the channels a trigger names, in order; else the script's."""
    due = now + (delay if delay is not None else script.policy.delay or timedelta(0))
    named = named or script.policy.channels

    def suppressed(reason: str, channel: str = asked or "none") -> Decision:
        return Decision(DeliveryStatus.SUPPRESSED, reason, due, channel, named)

    if contact.opted_out:
        return suppressed("opted_out")
    for days, survey in ((script.policy.throttle_days,
                          script.id if script.policy.throttle_scope == "survey" else None),
                         (policy.throttle_days, None)):
        if days and store.deliveries.surveyed_since(contact.id, now - timedelta(days=days),
                                                    survey):
            return suppressed("throttled")
    if asked == LINK:
        return Decision(DeliveryStatus.SENT, None, now, LINK)
    plan = channel_plan(store.deliveries.reachable(contact.id), asked, policy.channels, named)
    if not plan:
        return suppressed("no_channel")
    allowed = next_allowed(due, script.policy.quiet_hours, contact.timezone or script.timezone)
    return Decision(DeliveryStatus.SCHEDULED, "quiet_hours" if allowed != due else None,
                    allowed, plan[0], named)


def delivery_values(contact: Contact, script: Script, decision: Decision,
                    context: Mapping[str, Scalar], now: datetime, **extra: Any
                    ) -> dict[str, Any]:
    sent: dict[str, Any] = {}
    if decision.status == DeliveryStatus.SENT:  # a link: its expiry runs from now
        expire = script.policy.expires_after
        sent = {"sent_channel": decision.channel, "sent_at": now,
                "expires_at": now + expire if expire else None}
    return {"customer_id": contact.id, "survey_id": script.id,
            "script_version": script.version, "channel": decision.channel,
            "channels": list(decision.channels) if decision.channels else None,
            "due_at": decision.due_at, "status": decision.status, "reason": decision.reason,
            "attempts": 0, "context": dict(context), "token": new_token(),
            "created_at": now, "updated_at": now, **sent, **extra}


class PolicyService:
    """What deciding on deliveries needs: storage, the policy, the time, the scripts."""

    def __init__(self, db: Database, *, policy: SendPolicy | None = None,
                 clock: Callable[[], datetime] | None = None,
                 scripts: ScriptCache | None = None) -> None:
        self._db = db
        self._policy = policy or SendPolicy()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scripts = scripts or ScriptCache()


class TriggerService(PolicyService):

    async def accept(self, trigger: Trigger) -> Accepted:
        """Record the trigger once and schedule (or suppress) its delivery, in one
        transaction: the same idempotency key again returns the first answer."""
        now = self._clock()

        def work(store: Store) -> Accepted:
            deliveries = store.deliveries
            trigger_id = deliveries.claim_trigger(trigger.source, trigger.idempotency_key,
                                                  trigger.payload, now)
            if trigger_id is None:
                payload, response = deliveries.trigger_record(trigger.idempotency_key)
                if payload != trigger.payload:
                    raise KeyReused("this idempotency_key was used with a different request")
                return Accepted.from_json(response, replay=True)
            script = self._scripts.active(store.scripts, trigger.survey)
            if script is None:  # raised before the commit: nothing of it is stored
                raise UnknownSurvey(f"no active survey {trigger.survey!r}")
            customer = trigger.customer
            contact = deliveries.upsert_customer(
                customer.external_id,
                {"first_name": customer.first_name, "phone": customer.phone,
                 "email": customer.email, "locale": customer.locale,
                 "timezone": customer.timezone}, customer.attributes, now)
            for channel, address in customer.addresses().items():
                if not contact.erased:
                    deliveries.bind_identity(contact.id, channel, address, now)
            decision = decide(store, contact, script, self._policy,
                              asked=trigger.channel, delay=trigger.delay, now=now,
                              named=trigger.channels)
            values = delivery_values(contact, script, decision, trigger.context, now,
                                     trigger_id=trigger_id)
            delivery_id = deliveries.insert_delivery(values)
            accepted = Accepted(trigger_id, delivery_id, decision.status, decision.reason,
                                decision.due_at, token=values["token"]
                                if decision.status != DeliveryStatus.SUPPRESSED else None)
            deliveries.set_trigger_response(trigger_id, accepted.to_json())
            return accepted

        accepted = await self._db.write(work)
        log.info("trigger %s%s: delivery %s %s%s", accepted.trigger_id,
                 " (replayed)" if accepted.replay else "", accepted.delivery_id,
                 accepted.status, f" ({accepted.reason})" if accepted.reason else "", extra={
                     "trigger_id": accepted.trigger_id, "delivery_id": accepted.delivery_id,
                     "survey": trigger.survey, "status": accepted.status,
                     "reason": accepted.reason, "replay": accepted.replay})
        return accepted

    async def active_surveys(self) -> list[Script]:
        """The scripts new dialogues start on, by survey id."""
        return await self._db.read(lambda store: self._scripts.all_active(store.scripts))

    async def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        row = await self._db.read(lambda store: store.deliveries.get(delivery_id))
        return None if row is None else _delivery_json(row)

    async def deliveries(self, *, customer: str | None, status: str | None,
                         survey: str | None, after: int, limit: int) -> list[dict[str, Any]]:
        """A page of deliveries by id; `customer` is an external id."""
        rows = await self._db.read(lambda store: store.deliveries.search(
            customer=customer, status=status, survey_id=survey, after=after, limit=limit))
        return [_delivery_json(row) for row in rows]


def _delivery_json(row: DeliveryRow) -> dict[str, Any]:
    return {"id": row.id, "survey": row.survey_id, "script_version": row.script_version,
            "customer_id": row.customer_id, "trigger_id": row.trigger_id,
            "channel": row.channel, "channels": row.channels,
            "sent_channel": row.sent_channel, "status": row.status,
            "reason": row.reason, "attempts": row.attempts, "last_error": row.last_error,
            "due_at": row.due_at, "sent_at": row.sent_at, "expires_at": row.expires_at,
            "context": row.context}
