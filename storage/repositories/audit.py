from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from storage.models import AuditRow
from storage.repositories.base import Repository


class AuditRepository(Repository):
    async def add(self, actor: str, action: str, target: str, details: Mapping[str, Any],
                  *, now: datetime) -> AuditRow:
        row = AuditRow(actor=actor, action=action, target=target, details=dict(details), at=now)
        self.session.add(row)
        await self.session.flush()
        return row
