"""Per-address limits that every process shares: counts per clock minute, kept in the
database (the `limits` table) or, with REDIS_URL, in Redis through the `limits` library.

One port, two operations:

- `await limiter.hit(address)` counts one request; False once the minute's `per_minute`
  are spent (the anonymous rate).
- `await limiter.verdict(address, check)` judges a presented secret against the
  failed-attempts budget: `check` is a synchronous callable that returns who presented it,
  or None when it is wrong. Raises Spent, without calling `check`, when the address has
  spent its budget; records a failure when `check` says None; a right secret costs nothing.

Why a verdict cannot be raced: a guess is only ever judged holding a reserved unit of the
budget, and nothing from the same address is judged between the reservation and its outcome.
In the database the reservation is an upsert that adds one to the minute's count and returns
it, in a transaction: over the budget, the transaction rolls back and the secret is never
compared; otherwise `check` runs (no await in between) and a wrong secret commits the one
added, a right one rolls it back. The upsert holds the row (PostgreSQL's row lock; SQLite
takes its one write lock, BEGIN IMMEDIATE) until that commit or rollback, so another
request's upsert for the address, in any process, waits and then sees the outcome. However
many guesses arrive at once, at most `per_minute` are ever compared. In Redis the library's
fixed-window hit is the reservation and a hit of cost -1 gives a right secret's back; there
is no row to hold, so concurrent requests may see another's reservation while it lasts:
within a process they are taken one at a time (a lock per address, for both backends, which
also keeps waiting requests from holding database connections), so with N processes a right
secret may be refused only when the address is within N of its budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from limits import RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.models import LimitRow

T = TypeVar("T")
MINUTE = 60


class Spent(Exception):
    """The address has spent this minute's budget."""


class Limiter:
    """`per_minute` per address and clock minute, under `scope` (limits apart share a store)."""

    def __init__(self, scope: str, per_minute: int) -> None:
        self.scope = scope
        self.per_minute = per_minute
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def hit(self, address: str) -> bool:
        raise NotImplementedError

    async def verdict(self, address: str, check: Callable[[], T | None]) -> T | None:
        async with self._one_at_a_time(address):
            return await self._verdict(address, check)

    async def _verdict(self, address: str, check: Callable[[], T | None]) -> T | None:
        raise NotImplementedError

    @asynccontextmanager
    async def _one_at_a_time(self, address: str) -> AsyncIterator[None]:
        # A lock per address, forgotten when nobody holds or waits for it.
        lock, users = self._locks.get(address, (asyncio.Lock(), 0))
        self._locks[address] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[address]
            if users == 1:
                del self._locks[address]
            else:
                self._locks[address] = (lock, users - 1)


class DatabaseLimiter(Limiter):
    def __init__(self, engine: AsyncEngine, scope: str, per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(scope, per_minute)
        self._engine = engine
        self._clock = clock
        self._pruned = 0
        self._insert: Any = (postgresql.insert if engine.dialect.name == "postgresql"
                             else sqlite.insert)

    async def _add_one(self, connection: AsyncConnection, address: str) -> int:
        """Adds one to the address's count for this minute and returns the count: one
        statement, so concurrent ones never both read the same count."""
        minute = int(self._clock()) // MINUTE * MINUTE
        if minute != self._pruned:  # once a minute per process: past minutes are done with
            self._pruned = minute
            await connection.execute(delete(LimitRow).where(LimitRow.minute < minute))
        upsert = self._insert(LimitRow).values(minute=minute, scope=self.scope,
                                               address=address, count=1)
        upsert = upsert.on_conflict_do_update(
            index_elements=["minute", "scope", "address"],
            set_={"count": LimitRow.count + 1}).returning(LimitRow.count)
        count: int = (await connection.execute(upsert)).scalar_one()
        return count

    async def hit(self, address: str) -> bool:
        async with self._engine.begin() as connection:
            return await self._add_one(connection, address) <= self.per_minute

    async def _verdict(self, address: str, check: Callable[[], T | None]) -> T | None:
        # Leaving the block without a commit rolls back: the unit reserved is given back.
        async with self._engine.connect() as connection:
            if await self._add_one(connection, address) > self.per_minute:
                raise Spent
            who = check()
            if who is None:
                await connection.commit()
            return who


class RedisLimiter(Limiter):
    def __init__(self, url: str, scope: str, per_minute: int) -> None:
        super().__init__(scope, per_minute)
        # "async+": the library's asyncio storage for the same URL (its documented scheme).
        self._limiter = FixedWindowRateLimiter(storage_from_string(f"async+{url}"))
        self._item = RateLimitItemPerMinute(per_minute)

    async def hit(self, address: str) -> bool:
        return await self._limiter.hit(self._item, self.scope, address)

    async def _verdict(self, address: str, check: Callable[[], T | None]) -> T | None:
        if not await self._limiter.hit(self._item, self.scope, address):
            raise Spent
        who = check()
        if who is not None:
            await self._limiter.hit(self._item, self.scope, address, cost=-1)
        return who


def limiter(scope: str, per_minute: int, engine: AsyncEngine,
            redis_url: str | None) -> Limiter:
    """In Redis when REDIS_URL is set, else in the database."""
    if redis_url:
        return RedisLimiter(redis_url, scope, per_minute)
    return DatabaseLimiter(engine, scope, per_minute)
