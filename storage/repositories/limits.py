"""Per-address counts per clock minute (bot/ratelimit.py's database backend), shared by
every process: one upsert adds and returns the count, so concurrent ones never both read
the same count."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from storage.models import LimitRow
from storage.repositories.base import Repository


def _upsert(insert: Any) -> Any:
    statement = insert(LimitRow)
    return statement.on_conflict_do_update(
        index_elements=["minute", "scope", "address"],
        set_={"count": LimitRow.count + statement.excluded.count}).returning(LimitRow.count)


# Built once (a statement rebuilt per call costs its cache key each time).
_ADD = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


class Limits(Repository):
    def add(self, scope: str, address: str, minute: int, amount: int) -> int:
        """Adds `amount` to the address's count for `minute`; the count after."""
        return int(self.connection.execute(_ADD[self.connection.dialect.name], {
            "minute": minute, "scope": scope, "address": address, "count": amount,
        }).scalar_one())

    def forget_before(self, minute: int) -> None:
        """Past minutes are done with."""
        self.connection.execute(delete(LimitRow).where(LimitRow.minute < minute))
