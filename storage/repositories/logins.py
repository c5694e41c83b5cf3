"""Dashboard logins: one row per login session, so that logging out ends it on the server
and not only in one browser."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, select, update

from storage.models import AdminDialogueRow
from storage.repositories.base import Repository

# Built once: read on every dashboard request.
_WHO = select(AdminDialogueRow.who).where(AdminDialogueRow.id == bindparam("k_id"),
                                          AdminDialogueRow.revoked_at.is_(None))


class Logins(Repository):
    def add(self, session_id: str, who: str, *, now: datetime, older_than: datetime) -> None:
        """A new session; those created before `older_than` are deleted on the way (their
        cookies are refused anyway)."""
        self.session.execute(delete(AdminDialogueRow).where(
            AdminDialogueRow.created_at < older_than))
        self.session.add(AdminDialogueRow(id=session_id, who=who, created_at=now))

    def who(self, session_id: str) -> str | None:
        """Who holds the session, None if it is unknown or was logged out."""
        return self.session.scalar(_WHO, {"k_id": session_id})

    def revoke(self, session_id: str, *, now: datetime) -> None:
        self.session.execute(update(AdminDialogueRow).where(
            AdminDialogueRow.id == session_id).values(revoked_at=now))
