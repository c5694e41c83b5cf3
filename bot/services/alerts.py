"""The closed loop: a low-score alert is a record a human takes, notes, answers and resolves.

Replies reach the customer in the channel they answered in (the alert's dialogue): in
Telegram as the bot, by e-mail as a reply; through the `Replier` of that channel, which the
process has where it can send with it. Every change is audited; resolving queues an
`alert.resolved` webhook event in the same transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.services.errors import NotFound, ServiceError
from bot.services.scripts import ScriptCache
from bot.services.surveys import AnswerLine, title
from storage import errors
from storage.models import AlertRow, AlertStatus, Channel
from storage.repositories.alerts import ViewRow
from storage.uow import Database, Store

MAX_TEXT = 4000  # a reply must fit one Telegram message (4096) with room to spare


class AlertError(ServiceError):
    """Root of what the alert service refuses; each edge maps it to its own answer."""


class AlertNotFound(AlertError, NotFound):
    pass


class AlertResolved(AlertError):
    """The alert is resolved: nothing more is sent for it, nobody takes it."""


class Unreachable(AlertError):
    """No channel reaches this customer: no address, blocked, bounced or erased."""


class NotConfigured(AlertError):
    """This process cannot send on the customer's channel (no BOT_TOKEN, no SMTP_URL)."""


class SendFailed(AlertError):
    """The channel refused or failed the message: nothing was recorded as sent."""


class BadText(AlertError):
    """An empty text, or one longer than MAX_TEXT; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Replier(Protocol):
    """Sends the team's reply through one channel: Unreachable when the channel says the
    customer cannot be reached there, SendFailed else."""

    async def reply(self, target: Target, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as a human reads it; `context`, `answers` and `notes` only from `get`."""

    id: int
    status: str
    survey_id: str
    step: str
    metric: str | None
    score: int | None
    customer_id: int
    external_id: str | None
    first_name: str | None
    session_id: int
    channel: str
    owner: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    overdue_at: datetime | None
    message_id: str | None
    context: Mapping[str, Any] = field(default_factory=dict)
    answers: tuple[AnswerLine, ...] = ()
    notes: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    channel: str  # telegram | email
    address: str
    subject: str = ""
    in_reply_to: str | None = None


def _view(row: ViewRow) -> AlertView:
    alert: AlertRow = row.AlertRow
    return AlertView(
        alert.id, alert.status, alert.survey_id, alert.step_id, row.metric, alert.score,
        alert.customer_id, row.external_id, row.first_name, alert.session_id, row.channel,
        alert.owner, alert.created_at, alert.updated_at, alert.resolved_at, alert.overdue_at,
        alert.message_id, notes=tuple(alert.notes or ()))


def clean(text: str, name: str = "text") -> str:
    text = text.strip()
    if not text:
        raise BadText(name, f"{name} is empty")
    if len(text) > MAX_TEXT:
        raise BadText(name, f"{name} is longer than {MAX_TEXT} characters")
    return text


# Told of every resolve, wherever it came from (the API, the dashboard, the chat's button),
# with a name to show: the team chat's alert message then says who, without its buttons.
OnResolved = Callable[[AlertView, str], Awaitable[None]]


class AlertService:
    def __init__(self, db: Database, *, scripts: ScriptCache | None = None,
                 clock: Callable[[], datetime] | None = None,
                 repliers: Mapping[str, Replier] | None = None,
                 on_resolved: OnResolved | None = None) -> None:
        """`repliers`: by channel, those this process can reply through (a channel not
        here is NotConfigured)."""
        self._db = db
        self._scripts = scripts or ScriptCache()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.repliers = repliers or {}
        self.on_resolved = on_resolved

    async def queue(self, *, status: str | None = None, survey: str | None = None,
                    owner: str | None = None, overdue: bool | None = None,
                    before: int | None = None, limit: int = 50) -> list[AlertView]:
        """Newest first; pass the last id as `before` for the next page."""
        rows = await self._db.read(lambda store: store.alerts.page(
            status=status, survey=survey, owner=owner, overdue=overdue, before=before,
            limit=limit))
        return [_view(row) for row in rows]

    async def get(self, alert_id: int) -> AlertView:
        """The alert with its dialogue's context, answers and the notes. AlertNotFound."""
        return await self._db.read(lambda store: _full(store, alert_id))

    async def take(self, alert_id: int, owner: str, *, actor: str) -> AlertView:
        """`owner` works on it now: in progress. AlertResolved."""
        owner = clean(owner, "owner")
        now = self._clock()

        def write(store: Store) -> AlertView:
            alert = _for_change(store, alert_id)
            if alert.status == AlertStatus.RESOLVED:
                raise AlertResolved(f"alert {alert_id} is resolved")
            before = {"status": alert.status, "owner": alert.owner}
            alert.status, alert.owner, alert.updated_at = AlertStatus.IN_PROGRESS, owner, now
            store.audit.add(actor, "alert.take", f"alert:{alert_id}", {
                "before": before, "after": {"status": alert.status, "owner": owner}}, now=now)
            return _full(store, alert_id)

        return await self._db.write(write)

    async def note(self, alert_id: int, author: str, text: str) -> AlertView:
        """A note for the team; resolved alerts take notes too."""
        text = clean(text)
        now = self._clock()

        def write(store: Store) -> AlertView:
            _add_note(_for_change(store, alert_id), now, kind="note", author=author,
                      text=text)
            store.audit.add(author, "alert.note", f"alert:{alert_id}", {}, now=now)
            return _full(store, alert_id)

        return await self._db.write(write)

    async def reply(self, alert_id: int, author: str, text: str) -> tuple[AlertView, str]:
        """Send `text` to the customer in the channel they answered in, then record it in
        the notes (an open alert is now in progress, owned by the author if nobody owns
        it). Returns the alert and the channel used. AlertNotFound, AlertResolved,
        BadText, Unreachable, NotConfigured, SendFailed: nothing is recorded then."""
        text = clean(text)
        target = await self._db.read(lambda store: self._target(store, alert_id))
        # Sent outside any transaction: never hold one across the network.
        await self._send(target, text)
        now = self._clock()

        def write(store: Store) -> AlertView:
            alert = _for_change(store, alert_id)
            _add_note(alert, now, kind="reply", author=author, text=text,
                      channel=target.channel)
            if alert.status == AlertStatus.OPEN:  # resolved meanwhile: the reply is noted
                alert.status = AlertStatus.IN_PROGRESS
                alert.owner = alert.owner or author
            store.audit.add(author, "alert.reply", f"alert:{alert_id}",
                            {"channel": target.channel}, now=now)
            return _full(store, alert_id)

        return await self._db.write(write), target.channel

    async def resolve(self, alert_id: int, author: str, note: str | None = None, *,
                      by: str | None = None) -> AlertView:
        """Resolved now; an `alert.resolved` webhook event is queued with the change, and
        on_resolved is told, showing `by` (a person's name) or else the author.
        AlertResolved if it was already."""
        text = clean(note, "note") if note is not None else None
        now = self._clock()

        def write(store: Store) -> AlertView:
            alert = _for_change(store, alert_id)
            if alert.status == AlertStatus.RESOLVED:
                raise AlertResolved(f"alert {alert_id} was resolved already")
            before = alert.status
            alert.status, alert.resolved_at = AlertStatus.RESOLVED, now
            if text is not None:
                _add_note(alert, now, kind="note", author=author, text=text)
            else:
                alert.updated_at = now
            customer = store.customers.get(alert.customer_id)
            store.alerts.queue_resolved(alert, {
                "alert_id": alert.id, "survey": alert.survey_id, "step": alert.step_id,
                "score": alert.score, "customer": customer.external_id,
                "resolved_by": author, "at": now.isoformat()}, now)
            store.audit.add(author, "alert.resolve", f"alert:{alert_id}",
                            {"before": before, "note": text is not None}, now=now)
            return _full(store, alert_id)

        view = await self._db.write(write)
        if self.on_resolved is not None:
            await self.on_resolved(view, by or author)
        return view

    async def claim_overdue(self) -> list[AlertView]:
        """Open alerts nobody took within their script's alert_sla, each marked overdue
        by a conditional UPDATE committed before anyone re-sends it: whichever process
        claims one re-sends it, once."""
        now = self._clock()

        def write(store: Store) -> list[AlertView]:
            slas: dict[tuple[str, int], timedelta] = {}
            claimed = []
            for candidate in store.alerts.unclaimed(now):
                key = (candidate.survey_id, candidate.script_version)
                if key not in slas:
                    slas[key] = self._scripts.get(store.scripts, *key).alert_sla
                if (candidate.created_at + slas[key] <= now
                        and store.alerts.mark_overdue(candidate.id, now)):
                    claimed.append(candidate.id)
            return [_view(store.alerts.view(alert_id)) for alert_id in claimed]

        return await self._db.write(write)

    # -- helpers ----------------------------------------------------------------------------

    def _target(self, store: Store, alert_id: int) -> Target:
        """Where a reply goes: the customer's Telegram chat for a Telegram dialogue, else
        their e-mail address (an e-mailed survey is answered on its web page)."""
        row = _row(store, alert_id)
        if row.AlertRow.status == AlertStatus.RESOLVED:
            raise AlertResolved(f"alert {alert_id} is resolved")
        customer = store.customers.get(row.AlertRow.customer_id)
        if customer.erased_at is not None:
            raise Unreachable("no channel reaches this customer: their data was erased")
        if row.channel == Channel.TELEGRAM:
            found = store.alerts.address(customer.id, Channel.TELEGRAM)
            if found is None or not found[1]:
                raise Unreachable("no channel reaches this customer: their Telegram chat "
                                  + ("blocked the bot" if found else "is unknown"))
            return Target(Channel.TELEGRAM, found[0])
        found = store.alerts.address(customer.id, Channel.EMAIL)
        address = (found[0] if found[1] else None) if found else customer.email
        if address is None:
            raise Unreachable("no channel reaches this customer: they answered on the "
                              f"{row.channel} channel and have no reachable e-mail address")
        dialogue = store.dialogues.get(row.AlertRow.session_id)
        assert dialogue is not None  # an alert's dialogue is never deleted
        script = self._scripts.get(store.scripts, dialogue.survey_id, dialogue.script_version)
        delivery = (store.deliveries.get(dialogue.delivery_id)
                    if dialogue.delivery_id is not None else None)
        thread = (delivery.message_id if delivery is not None
                  and delivery.sent_channel == Channel.EMAIL else None)
        return Target(Channel.EMAIL, address,
                      "Re: " + title(script, dialogue.dialogue_state().locale), thread)

    async def _send(self, target: Target, text: str) -> None:
        replier = self.repliers.get(target.channel)
        if replier is None:
            raise NotConfigured(f"this process cannot reply by {target.channel}: the channel "
                                "is not configured here (docs/configuration.md)")
        await replier.reply(target, text)


def _row(store: Store, alert_id: int) -> ViewRow:
    try:
        return store.alerts.view(alert_id)
    except errors.NotFound:
        raise AlertNotFound(f"no alert {alert_id}") from None


def _for_change(store: Store, alert_id: int) -> AlertRow:
    try:
        return store.alerts.for_change(alert_id)
    except errors.NotFound:
        raise AlertNotFound(f"no alert {alert_id}") from None


def _full(store: Store, alert_id: int) -> AlertView:
    """The alert with its dialogue's context and answers (AlertService.get)."""
    row = _row(store, alert_id)
    dialogue = store.dialogues.get(row.AlertRow.session_id)
    assert dialogue is not None  # an alert's dialogue is never deleted
    answers = store.answers.for_session(dialogue.id)
    return replace(_view(row), context=dict(dialogue.dialogue_state().context),
                   answers=tuple(AnswerLine(a.step_id, a.score, tuple(a.choices or ()), a.text)
                                 for a in answers))


def _add_note(alert: AlertRow, now: datetime, **note: str) -> None:
    # A new list: the JSON column notices assignment, not changes in place.
    alert.notes = [*(alert.notes or ()), {**note, "at": now.isoformat()}]
    alert.updated_at = now
