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
(storage.erasure.scrub; README says what stays in WAL archives and backups).
Erasing again changes nothing and answers the same (the first erasure's time), and tries
the files again."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot.phones import e164
from bot.services.errors import NotFound, ServiceError
from bot.services.logins import Logins
from bot.services.scripts import Loaded, parse_apart, store_scripts
from conversations.errors import ScriptError, ScriptIssue
from conversations.script import Script
from storage import errors
from storage.erasure import scrub
from storage.models import AuditRow, CustomerRow, ScriptRow
from storage.uow import Database, Store


class AdminError(ServiceError):
    """Root of what an admin action refuses; `field` names the parameter at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Unknown(AdminError, NotFound):
    """No such survey, version or customer."""


class Mismatch(AdminError):
    """The body names another survey than the URL."""


class BadScript(AdminError):
    """The script does not validate; `lines` are `FILE:LINE: field.path: message`."""

    def __init__(self, issues: Sequence[ScriptIssue], filename: str) -> None:
        self.issues = list(issues)
        self.lines = [issue.format(filename) for issue in issues]
        super().__init__("\n".join(self.lines), issues[0].path if issues else "body")


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure left: rows kept, anonymous, under the customer's external id."""

    external_id: str
    erased_at: datetime
    answers: int
    sessions: int
    deliveries: int
    alerts: int
    # storage.erasure.scrub's answer: on SQLite whether the files hold nothing erased any
    # more.
    files_clean: bool | None = None


class AdminService:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None
                 ) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        self.logins = Logins(db)

    def now(self) -> datetime:
        return self._clock()

    async def audit(self, actor: str, action: str, target: str,
                    details: Mapping[str, Any] | None = None) -> int:
        """Write one audit row in a transaction of its own, for an action that changes
        nothing stored (an export) or commits elsewhere; a change writes its row in its own
        transaction instead (store.audit.add), so both commit or neither does. Returns the
        row's id."""
        now = self._clock()
        return await self._db.write(
            lambda store: store.audit.add(actor, action, target, details or {}, now=now))

    async def audit_page(self, *, action: str | None, target: str | None,
                         before: int | None, limit: int) -> Sequence[AuditRow]:
        return await self._db.read(lambda store: store.audit.page(
            action=action, target=target, before=before, limit=limit))

    # -- scripts ---------------------------------------------------------------------------

    async def surveys(self) -> list[tuple[ScriptRow, int | None]]:
        """Every survey: its latest version and its active one (None: switched off)."""
        return await self._db.read(lambda store: store.scripts.surveys())

    async def script(self, survey_id: str, version: int | None = None) -> ScriptRow:
        """A stored version, the latest by default."""
        def read(store: Store) -> ScriptRow:
            latest = _known(store, survey_id)
            return latest if version is None else _version(store, survey_id, version)

        return await self._db.read(read)

    async def versions(self, survey_id: str) -> Sequence[ScriptRow]:
        rows = await self._db.read(lambda store: store.scripts.versions(survey_id))
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
        [loaded] = await store_scripts(self._db, [("api", script, source)], actor=actor,
                                       now=self._clock())
        return loaded

    async def activate(self, survey_id: str, version: int | None, *, actor: str
                       ) -> tuple[int | None, int]:
        """Make a version (the latest by default) the one new dialogues start on; the
        versions active before and now."""
        now = self._clock()

        def write(store: Store) -> tuple[int | None, int]:
            after = _known(store, survey_id).version if version is None else version
            before = store.scripts.active_for(survey_id)
            try:
                store.scripts.set_active(survey_id, after)
            except errors.NotFound:
                raise Unknown(f"{survey_id} has no version {after}", "version") from None
            was = before.version if before else None
            store.audit.add(actor, "script.activated", survey_id,
                            {"before": was, "after": after}, now=now)
            return was, after

        return await self._db.write(write)

    async def deactivate(self, survey_id: str, *, actor: str) -> int | None:
        """No new dialogues of this survey (those under way finish); the version that was
        active, if any."""
        now = self._clock()

        def write(store: Store) -> int | None:
            _known(store, survey_id)
            before = store.scripts.active_for(survey_id)
            store.scripts.set_active(survey_id, None)
            was = before.version if before else None
            store.audit.add(actor, "script.deactivated", survey_id,
                            {"before": was, "after": None}, now=now)
            return was

        return await self._db.write(write)

    # -- customers -------------------------------------------------------------------------

    async def find_customers(self, q: str, limit: int = 20) -> Sequence[CustomerRow]:
        """Customers whose external id, e-mail, phone or channel address is `q` exactly."""
        q = q.strip()
        phone = e164(q, valid=False)
        return await self._db.read(
            lambda store: store.admin.find_customers(q, phone=phone, limit=limit))

    async def export_customer(self, external_id: str, *, actor: str) -> dict[str, Any]:
        """Everything stored about the customer, as JSON-ready data (delivery tokens
        aside: they are credentials, not data about anyone)."""
        now = self._clock()

        def write(store: Store) -> dict[str, Any]:
            customer = _customer(store, external_id)
            data = store.admin.customer_data(customer)
            store.audit.add(actor, "customer.exported", external_id,
                            {"customer_id": customer.id}, now=now)
            return data

        return await self._db.write(write)

    async def erase_customer(self, external_id: str, *, actor: str) -> Erased:
        """Remove the customer's personal data and texts, keep anonymous scores (see the
        module's docstring for what goes and what stays). One transaction, then the
        files are scrubbed of what it removed."""
        now = self._clock()

        def write(store: Store) -> Erased:
            customer = _customer(store, external_id)
            done = store.customers.erase(customer, now)
            store.audit.add(actor, "customer.erased", external_id, {
                "customer_id": customer.id, "again": done.again, "answers": done.answers},
                now=now)
            return Erased(external_id, done.erased_at, done.answers, done.dialogues,
                          done.deliveries, done.alerts)

        erased = await self._db.write(write)
        return replace(erased, files_clean=await scrub(self._db))


def _known(store: Store, survey_id: str) -> ScriptRow:
    latest = store.scripts.latest(survey_id)
    if latest is None:
        raise Unknown(f"no survey {survey_id!r}", "id")
    return latest


def _version(store: Store, survey_id: str, version: int) -> ScriptRow:
    try:
        return store.scripts.get(survey_id, version)
    except errors.NotFound:
        raise Unknown(f"{survey_id} has no version {version}", "version") from None


def _customer(store: Store, external_id: str) -> CustomerRow:
    customer = store.customers.by_external_id(external_id)
    if customer is None:
        raise Unknown(f"no customer {external_id!r}", "external_id")
    return customer


