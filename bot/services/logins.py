"""Dashboard logins: a session per login, kept on the server so that logging out ends it
there and not only in one browser; and each login, let in or refused, in the audit log
under the name typed (never the token)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AdminDialogueRow
from storage.uow import UnitOfWork

Factory = async_sessionmaker[AsyncSession]
SESSION_AGE = timedelta(hours=12)


def actor(who: str) -> str:
    """The audit log's actor for a dashboard user: prefixed, so a name typed at login
    never reads as `admin` or a token's `token:<name>`."""
    return f"dashboard:{who}"


async def log_in(factory: Factory, who: str, *, now: datetime,
                 details: Mapping[str, Any]) -> str:
    """A new session for `who`: its id, for the signed cookie. Sessions past their age
    are deleted on the way: their cookies are refused anyway."""
    session_id = secrets.token_urlsafe(24)
    async with UnitOfWork(factory) as uow:
        await uow.session.execute(delete(AdminDialogueRow).where(
            AdminDialogueRow.created_at < now - SESSION_AGE))
        uow.session.add(AdminDialogueRow(id=session_id, who=who, created_at=now))
        await uow.audit.add(actor(who), "dashboard.login", "dashboard", details, now=now)
        await uow.commit()
    return session_id


async def refused(factory: Factory, who: str, reason: str, *, now: datetime,
                  details: Mapping[str, Any]) -> None:
    async with UnitOfWork(factory) as uow:
        await uow.audit.add(actor(who), "dashboard.login_refused", "dashboard",
                            {"reason": reason, **details}, now=now)
        await uow.commit()


async def who_is(factory: Factory, session_id: str) -> str | None:
    """Who holds this session, or None if it is unknown or was logged out: one read by
    the primary key, on every dashboard request."""
    async with UnitOfWork(factory, read_only=True) as uow:
        return (await uow.session.scalars(select(AdminDialogueRow.who).where(
            AdminDialogueRow.id == session_id, AdminDialogueRow.revoked_at.is_(None)))).first()


async def log_out(factory: Factory, session_id: str, who: str, *, now: datetime) -> None:
    async with UnitOfWork(factory) as uow:
        await uow.session.execute(update(AdminDialogueRow).where(
            AdminDialogueRow.id == session_id).values(revoked_at=now))
        await uow.audit.add(actor(who), "dashboard.logout", "dashboard", {}, now=now)
        await uow.commit()
