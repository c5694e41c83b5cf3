"""Dashboard logins: a session per login, kept on the server so that logging out ends it
there and not only in one browser; and each login, let in or refused, in the audit log
under the name typed (never the token)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from storage.uow import Database, Store

SESSION_AGE = timedelta(hours=12)


def actor(who: str) -> str:
    """The audit log's actor for a dashboard user: prefixed, so a name typed at login
    never reads as `admin` or a token's `token:<name>`."""
    return f"dashboard:{who}"


class Logins:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def log_in(self, who: str, *, now: datetime, details: Mapping[str, Any]) -> str:
        """A new session for `who`: its id, for the signed cookie. Sessions past their age
        are deleted on the way: their cookies are refused anyway."""
        session_id = secrets.token_urlsafe(24)

        def write(store: Store) -> None:
            store.logins.add(session_id, who, now=now, older_than=now - SESSION_AGE)
            store.audit.add(actor(who), "dashboard.login", "dashboard", details, now=now)

        await self._db.write(write)
        return session_id

    async def refused(self, who: str, reason: str, *, now: datetime,
                      details: Mapping[str, Any]) -> None:
        await self._db.write(lambda store: store.audit.add(
            actor(who), "dashboard.login_refused", "dashboard", {"reason": reason, **details},
            now=now))

    async def who_is(self, session_id: str) -> str | None:
        """Who holds this session, or None if it is unknown or was logged out: one read by
        the primary key, on every dashboard request."""
        return await self._db.read(lambda store: store.logins.who(session_id))

    async def log_out(self, session_id: str, who: str, *, now: datetime) -> None:
        def write(store: Store) -> None:
            store.logins.revoke(session_id, now=now)
            store.audit.add(actor(who), "dashboard.logout", "dashboard", {}, now=now)

        await self._db.write(write)
