"""What an admin does through the API: survey scripts (read, compare, store, switch on and
off), customers (look up, export, erase) and the audit log that records each action.

Erasure (GDPR-style "forget me") removes what identifies or was written by the customer
and keeps what the metrics are made of, so every rollup stays true:
- customer row: first name, phone, e-mail, time zone and attributes are cleared; the
  external id stays, so a later trigger from the CRM finds them opted out instead of
  creating a new customer who would be surveyed again; `erased_at` and `opted_out_at` are
  set;
- identities (Telegram chat, e-mail address, phone) are deleted: nothing reaches them now;
- answers keep survey, step, metric, score, choices, channel, segment, day and the trigger
  context (agent, call type, shop: what reports group by; callers must not put personal
  data there); their free text is removed, the row stays and is still counted;
- alerts keep their score and status; their notes (comments, replies) are removed;
- dialogues lose the answers, profile and context copied into their state; open ones end;
- deliveries lose their token (the survey link), context, message id and last error;
  scheduled ones are suppressed (reason "erased");
- the triggers that named the customer keep only survey, idempotency key and external id
  (the same request again is then a conflict, not a replay);
- webhook events about the customer are deleted: those still in the outbox unsent, and
  those delivered or set aside, which are kept 7 days and carry the comments' texts.
Then the files: on SQLite, secure_delete (storage.db) has zeroed what the rows held and a
checkpoint empties the write-ahead log; on PostgreSQL the touched tables are vacuumed
(storage.db.scrub; README says what stays in WAL archives and backups).
Erasing again changes nothing and answers the same (the first erasure's time), and tries
the files again."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import phonenumbers
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.services.scripts import Loaded, parse_apart, store_scripts
from conversations.errors import ScriptError, ScriptIssue
from conversations.script import Script
from storage.db import scrub
from storage.errors import NotFound
from storage.models import (
    AlertRow,
    AnswerRow,
    AuditRow,
    Base,
    CustomerRow,
    DeliveryRow,
    DeliveryStatus,
    DialogueRow,
    DialogueStatus,
    IdentityRow,
    OutboxRow,
    ScriptRow,
    TriggerRow,
)
from storage.uow import UnitOfWork

Factory = async_sessionmaker[AsyncSession]
# What erase_customer changes or deletes rows of.
ERASED_TABLES = tuple(str(row.__tablename__) for row in (
    CustomerRow, IdentityRow, AnswerRow, AlertRow, DialogueRow, TriggerRow, DeliveryRow,
    OutboxRow))


class AdminError(RuntimeError):
    """Root of what an admin action refuses; `field` names the parameter at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Unknown(AdminError):
    """No such survey, version or customer."""


class Mismatch(AdminError):
    """The body names another survey than the URL."""


class BadScript(AdminError):
    """The script does not validate; `lines` are `FILE:LINE: field.path: message`."""

    def __init__(self, issues: Sequence[ScriptIssue], filename: str) -> None:
        self.issues = list(issues)
        self.lines = [issue.format(filename) for issue in issues]
        super().__init__("\n".join(self.lines), issues[0].path if issues else "body")


async def audit(factory: Factory, actor: str, action: str, target: str,
                details: Mapping[str, Any] | None = None, *, now: datetime) -> int:
    """Write one audit row in a unit of work of its own, for an action that changes nothing
    stored (an export) or commits elsewhere; a change made in a unit of work writes its row
    there instead (uow.audit.add), so both commit or neither does. Returns the row's id."""
    async with UnitOfWork(factory) as uow:
        row = await uow.audit.add(actor, action, target, details or {}, now=now)
        await uow.commit()
    return row.id


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure left: rows kept, anonymous, under the customer's external id."""

    external_id: str
    erased_at: datetime
    answers: int
    sessions: int
    deliveries: int
    alerts: int
    # storage.db.scrub's answer: on SQLite whether the files hold nothing erased any more.
    files_clean: bool | None = None


class AdminService:
    def __init__(self, factory: Factory, *, clock: Callable[[], datetime] | None = None
                 ) -> None:
        self.factory = factory
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self._clock()

    async def audit(self, actor: str, action: str, target: str,
                    details: Mapping[str, Any] | None = None) -> int:
        return await audit(self.factory, actor, action, target, details, now=self._clock())

    async def audit_page(self, *, action: str | None, target: str | None,
                         before: int | None, limit: int) -> Sequence[AuditRow]:
        async with UnitOfWork(self.factory, read_only=True) as uow:
            return await uow.audit.page(action=action, target=target, before=before,
                                        limit=limit)

    # -- scripts ---------------------------------------------------------------------------

    async def surveys(self) -> list[tuple[ScriptRow, int | None]]:
        """Every survey: its latest version and its active one (None: switched off)."""
        async with UnitOfWork(self.factory, read_only=True) as uow:
            return await uow.scripts.surveys()

    async def script(self, survey_id: str, version: int | None = None) -> ScriptRow:
        """A stored version, the latest by default."""
        async with UnitOfWork(self.factory, read_only=True) as uow:
            latest = await self._known(uow, survey_id)
            if version is None:
                return latest
            try:
                return await uow.scripts.get(survey_id, version)
            except NotFound:
                raise Unknown(f"{survey_id} has no version {version}", "version") from None

    async def versions(self, survey_id: str) -> Sequence[ScriptRow]:
        async with UnitOfWork(self.factory, read_only=True) as uow:
            rows = await uow.scripts.versions(survey_id)
        if not rows:
            raise Unknown(f"no survey {survey_id!r}", "id")
        return rows

    async def diff(self, survey_id: str, start: int | None, end: int | None
                   ) -> tuple[int, int, str]:
        """A unified diff of the sources of two versions; by default the latest against
        the one before it."""
        versions = {row.version: row for row in await self.versions(survey_id)}
        end = max(versions) if end is None else end
        start = max((v for v in versions if v < end), default=end) if start is None else start
        for name, version in (("from", start), ("to", end)):
            if version not in versions:
                raise Unknown(f"{survey_id} has no version {version}", name)
        lines = difflib.unified_diff(
            versions[start].source.splitlines(keepends=True),
            versions[end].source.splitlines(keepends=True),
            fromfile=f"{survey_id} v{start}", tofile=f"{survey_id} v{end}")
        return start, end, "".join(line if line.endswith("\n") else line + "\n"
                                   for line in lines)

    async def store_script(self, survey_id: str, source: str, *, is_json: bool,
                           actor: str, parsed: Script | None = None) -> Loaded:
        """Validate the source and store it as the survey's new active version, as
        `otklik scripts load` does; an unchanged script keeps its version. `parsed`: the
        source parsed already by the caller (a big script takes a good part of a second)."""
        filename = f"{survey_id}.{'json' if is_json else 'yaml'}"
        try:
            script = parsed or await parse_apart(source, filename)
        except ScriptError as exc:
            raise BadScript(exc.issues, filename) from None
        if script.id != survey_id:
            raise Mismatch(f"the script's id is {script.id!r}, the URL's {survey_id!r}", "id")
        [loaded] = await store_scripts(self.factory, [("api", script, source)], actor=actor,
                                       now=self._clock())
        return loaded

    async def activate(self, survey_id: str, version: int | None, *, actor: str
                       ) -> tuple[int | None, int]:
        """Make a version (the latest by default) the one new dialogues start on; the
        versions active before and now."""
        async with UnitOfWork(self.factory) as uow:
            latest = await self._known(uow, survey_id)
            version = latest.version if version is None else version
            before = await uow.scripts.active_for(survey_id)
            try:
                await uow.scripts.set_active(survey_id, version)
            except NotFound:
                raise Unknown(f"{survey_id} has no version {version}", "version") from None
            was = before.version if before else None
            await uow.audit.add(actor, "script.activated", survey_id,
                                {"before": was, "after": version}, now=self._clock())
            await uow.commit()
        return was, version

    async def deactivate(self, survey_id: str, *, actor: str) -> int | None:
        """No new dialogues of this survey (those under way finish); the version that was
        active, if any."""
        async with UnitOfWork(self.factory) as uow:
            await self._known(uow, survey_id)
            before = await uow.scripts.active_for(survey_id)
            await uow.scripts.set_active(survey_id, None)
            was = before.version if before else None
            await uow.audit.add(actor, "script.deactivated", survey_id,
                                {"before": was, "after": None}, now=self._clock())
            await uow.commit()
        return was

    @staticmethod
    async def _known(uow: UnitOfWork, survey_id: str) -> ScriptRow:
        latest = await uow.scripts.latest(survey_id)
        if latest is None:
            raise Unknown(f"no survey {survey_id!r}", "id")
        return latest

    # -- customers -------------------------------------------------------------------------

    async def find_customers(self, q: str, limit: int = 20) -> Sequence[CustomerRow]:
        """Customers whose external id, e-mail, phone or channel address is `q` exactly."""
        q = q.strip()
        matches = [CustomerRow.external_id == q, func.lower(CustomerRow.email) == q.lower(),
                   CustomerRow.id.in_(select(IdentityRow.customer_id)
                                      .where(IdentityRow.address.in_({q, q.lower()})))]
        if (phone := _e164(q)) is not None:
            matches.append(CustomerRow.phone == phone)
        async with UnitOfWork(self.factory, read_only=True) as uow:
            return (await uow.session.scalars(
                select(CustomerRow).where(or_(*matches)).order_by(CustomerRow.id)
                .limit(limit))).all()

    async def export_customer(self, external_id: str, *, actor: str) -> dict[str, Any]:
        """Everything stored about the customer, as JSON-ready data (delivery tokens
        aside: they are credentials, not data about anyone)."""
        async with UnitOfWork(self.factory) as uow:
            customer = await self._customer(uow, external_id)
            session = uow.session

            async def rows(model: type[Base], *where: Any) -> list[dict[str, Any]]:
                found = await session.scalars(
                    select(model).where(*where).order_by(model.id))  # type: ignore[attr-defined]
                return [_plain(row) for row in found]

            deliveries = await rows(DeliveryRow, DeliveryRow.customer_id == customer.id)
            for delivery in deliveries:
                delivery.pop("token")
            data = {
                "customer": _plain(customer),
                "identities": await rows(IdentityRow, IdentityRow.customer_id == customer.id),
                "triggers": await rows(TriggerRow, TriggerRow.id.in_(
                    d["trigger_id"] for d in deliveries if d["trigger_id"] is not None)),
                "deliveries": deliveries,
                "sessions": await rows(DialogueRow, DialogueRow.customer_id == customer.id),
                "answers": await rows(AnswerRow, AnswerRow.customer_id == customer.id),
                "alerts": await rows(AlertRow, AlertRow.customer_id == customer.id),
            }
            await uow.audit.add(actor, "customer.exported", external_id,
                                {"customer_id": customer.id}, now=self._clock())
            await uow.commit()
        return data

    async def erase_customer(self, external_id: str, *, actor: str) -> Erased:
        """Remove the customer's personal data and texts, keep anonymous scores (see the
        module's docstring for what goes and what stays). One transaction, then the
        files are scrubbed of what it removed."""
        now = self._clock()
        async with UnitOfWork(self.factory) as uow:
            customer = await self._customer(uow, external_id)
            session, who = uow.session, customer.id
            again = customer.erased_at is not None
            customer.first_name = customer.phone = customer.email = customer.timezone = None
            customer.attributes = {}
            customer.erased_at = customer.erased_at or now
            customer.opted_out_at = customer.opted_out_at or now
            customer.updated_at = now
            await session.execute(delete(IdentityRow).where(IdentityRow.customer_id == who))
            answers = await session.execute(
                update(AnswerRow).where(AnswerRow.customer_id == who).values(text=None))
            alerts = await session.execute(
                update(AlertRow).where(AlertRow.customer_id == who).values(notes=[]))
            dialogues = (await session.scalars(
                select(DialogueRow).where(DialogueRow.customer_id == who))).all()
            for dialogue in dialogues:
                state = {**dialogue.state, "values": {}, "context": {}, "customer": {}}
                changes: dict[str, Any] = {"state": state}
                if dialogue.status == DialogueStatus.ACTIVE:
                    changes["status"] = DialogueStatus.ABANDONED
                await uow.sessions.save(dialogue, now=now, **changes)
            triggers = (await session.execute(
                select(TriggerRow.id, TriggerRow.payload).join(
                    DeliveryRow, DeliveryRow.trigger_id == TriggerRow.id)
                .where(DeliveryRow.customer_id == who))).all()
            for trigger_id, payload in triggers:
                await session.execute(update(TriggerRow).where(TriggerRow.id == trigger_id)
                                      .values(payload=_trigger_left(payload, external_id)))
            await session.execute(
                update(DeliveryRow).where(DeliveryRow.customer_id == who,
                                          DeliveryRow.status == DeliveryStatus.SCHEDULED)
                .values(status=DeliveryStatus.SUPPRESSED, reason="erased"))
            deliveries = await session.execute(
                update(DeliveryRow).where(DeliveryRow.customer_id == who)
                .values(token=None, context={}, message_id=None, last_error=None,
                        remind_at=None, updated_at=now))
            await session.execute(delete(OutboxRow).where(OutboxRow.key == f"customer:{who}"))
            erased = Erased(external_id, customer.erased_at, _count(answers), len(dialogues),
                            _count(deliveries), _count(alerts))
            await uow.audit.add(actor, "customer.erased", external_id, {
                "customer_id": who, "again": again, "answers": erased.answers}, now=now)
            await uow.commit()
        engine = self.factory.kw["bind"]
        assert isinstance(engine, AsyncEngine)
        return replace(erased, files_clean=await scrub(engine, ERASED_TABLES))

    @staticmethod
    async def _customer(uow: UnitOfWork, external_id: str) -> CustomerRow:
        customer = await uow.customers.by_external_id(external_id)
        if customer is None:
            raise Unknown(f"no customer {external_id!r}", "external_id")
        return customer


def _plain(row: Base) -> dict[str, Any]:
    """A row's columns as JSON-ready values."""
    return {column.key: _json(getattr(row, column.key))
            for column in row.__table__.columns}


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def _trigger_left(payload: Mapping[str, Any], external_id: str) -> dict[str, Any]:
    return {"survey": payload.get("survey"), "idempotency_key": payload.get("idempotency_key"),
            "customer": {"external_id": external_id}}


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _e164(value: str) -> str | None:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
