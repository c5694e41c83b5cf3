"""Whether the database can be reached, and what the gauges show: what the channels need to
answer "try again" (a 503, an update handled again later) instead of failing, and what
/healthz and /metrics report. Storage tells the kinds of failure apart; this is its word to
the handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from storage.db import Outage, outage, patiently
from storage.uow import Database

__all__ = ["Availability", "Gauges", "Outage", "outage", "patiently"]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Gauges:
    by_status: dict[str, dict[str, int]]  # deliveries and alerts
    outbox_pending: int


class Availability:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def where(self) -> str:
        """The database, for an operator's log line (a file, or a server's database name)."""
        engine = self._db.engine
        return str(engine.url.database) if engine is not None else "?"

    async def database_reachable(self) -> bool:
        try:
            await self._db.read(lambda store: store.health.ping())
        except Exception as error:  # whatever it is, the database does not answer
            log.warning("health check: database unreachable: %s", type(error).__name__)
            return False
        return True

    async def gauges(self) -> Gauges:
        """Three small queries per scrape, none on a hot path."""
        return await self._db.read(lambda store: Gauges(
            store.health.by_status(), store.outbox.pending()))
