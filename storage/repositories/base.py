from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession


class Repository:
    """Queries over one unit of work's session; it never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
