"""Per-address limits that every process shares: counts per clock minute, kept in the
database (the `limits` table) or, with REDIS_URL, in Redis through the `limits` library.

One port:

- `await limiter.hit(address)` counts one request; False once the minute's `per_minute`
  are spent (the anonymous rate, an unknown survey link); `await limiter.spent(address)`
  says whether they are, counting nothing.
- `await limiter.verdict(address, check)` judges a presented secret against the
  failed-attempts budget: `check` is a synchronous callable that returns who presented it,
  or None when it is wrong. Raises Spent, without calling `check`, when the address has
  spent its budget; records a failure when `check` says None.

Why a verdict cannot be raced: a secret is only ever compared holding a unit of the budget
reserved in the shared store, and a wrong one spends it. A process reserves one unit per
address at a time (an upsert that adds one to the minute's count and returns it, in one
Database.write, rolled back over the budget; in Redis the library's fixed-window hit) and
holds it while the secrets it compares are right: they give it back to the process, not to
the store, so a right secret costs no trip to the store after the first of the minute, and
a wrong one is already counted. The compare itself is synchronous on the event loop, so
two requests never use one unit. However many guesses arrive at once, in however many
processes, at most `per_minute` are ever compared and found wrong. What it costs: each
process judging an address holds one unit of that address's budget, so with N processes
a right secret may be refused once the address's failures are within N of its budget
(FAILED_ATTEMPTS should be at least the number of processes). A unit is good until the
store's window ends: the clock minute in the database, Redis's window in Redis."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar, cast

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from storage.db import Unavailable
from storage.uow import Database, Store

T = TypeVar("T")
MINUTE = 60
FLUSH = 1.0  # seconds at most before a count is written (DatabaseLimiter.hit)
log = logging.getLogger(__name__)


class Spent(Exception):
    """The address has spent this minute's budget."""


class Limiter:
    """`per_minute` per address and clock minute, under `scope` (limits apart share a store)."""

    def __init__(self, scope: str, per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.scope = scope
        self.per_minute = per_minute
        self._clock = clock
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._held: dict[str, float] = {}  # address -> when the unit held for it lapses
        self._swept = 0.0

    async def hit(self, address: str) -> bool:
        raise NotImplementedError

    async def spent(self, address: str) -> bool:
        """Whether the address has no more this minute (nothing is counted)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Drops what is not written yet."""

    async def verdict(self, address: str, check: Callable[[], T | None]) -> T | None:
        # No await between finding the unit held and comparing: one unit, one compare.
        while self._held.get(address, 0.0) <= self._clock():
            async with self._one_at_a_time(address):
                if self._held.get(address, 0.0) <= self._clock():
                    self._forget_expired()
                    self._held[address] = await self._reserve(address)
        who = check()
        if who is None:
            del self._held[address]  # spent: the failure is counted by its reservation
        return who

    async def _reserve(self, address: str) -> float:
        """One unit of the address's budget taken in the store, or Spent; returns when the
        unit lapses (the end of the store's window)."""
        raise NotImplementedError

    def _forget_expired(self) -> None:
        now = self._clock()
        if now - self._swept >= MINUTE:  # once a minute: the held units of past windows
            self._swept = now
            self._held = {address: until for address, until in self._held.items()
                          if until > now}

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
    """Verdicts are one transaction each (see the module's docstring). Plain counts (`hit`:
    the anonymous rate, an unknown survey link) are on every page anyone may open, where a
    database round trip per request halved the pages served a second (bench/web.py): they
    are counted here and written with this process's others at most FLUSH seconds later,
    one upsert per address in one transaction, which returns each address's total over all
    processes. A process therefore decides from the totals it last wrote or judged plus its
    own counts since: another process's requests reach it within about FLUSH seconds."""

    def __init__(self, db: Database, scope: str, per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(scope, per_minute, clock)
        self._db = db
        self._pruned = 0
        self._minute = 0  # of the counts below
        self._totals: dict[str, int] = {}  # over every process, as last read
        self._pending: Counter[str] = Counter()  # counted here, not written yet
        self._writing: asyncio.Task[None] | None = None

    def _now(self) -> int:
        minute = int(self._clock()) // MINUTE * MINUTE
        if minute != self._minute:
            self._minute, self._totals, self._pending = minute, {}, Counter()
        return minute

    def _add(self, store: Store, minute: int, address: str, amount: int) -> int:
        if minute != self._pruned:  # once a minute per process: past minutes are done with
            self._pruned = minute
            store.limits.forget_before(minute)
        return store.limits.add(self.scope, address, minute, amount)

    async def hit(self, address: str) -> bool:
        self._now()
        self._pending[address] += 1
        if self._writing is None:
            self._writing = asyncio.create_task(self._write())
        return self._count(address) <= self.per_minute

    async def spent(self, address: str) -> bool:
        return self._count(address) >= self.per_minute

    def _count(self, address: str) -> int:
        self._now()
        return self._totals.get(address, 0) + self._pending[address]

    async def _write(self) -> None:
        try:
            await asyncio.sleep(FLUSH)
            minute, pending = self._minute, self._pending
            self._pending = Counter()
            totals = await self._db.write(lambda store: {
                address: self._add(store, minute, address, amount)
                for address, amount in pending.items()})
            if minute == self._now():
                self._totals.update(totals)
        except Exception as error:  # the counts are lost, not the requests (a database away)
            log.warning("the %s limit's counts of a second could not be written (%s)",
                        self.scope, type(error).__name__)
        finally:
            self._writing = None

    async def close(self) -> None:
        if self._writing is not None:
            self._writing.cancel()

    async def _reserve(self, address: str) -> float:
        minute = self._now()

        def reserve(store: Store) -> int:
            count = self._add(store, minute, address, 1)
            if count > self.per_minute:
                raise _Over(count)  # rolled back: the secret is never compared
            return count

        try:
            self._totals[address] = await self._db.write(reserve)
        except _Over as over:
            self._totals[address] = over.count - 1
            raise Spent from None
        return minute + MINUTE


class _Over(Exception):
    """A reservation over the budget: its transaction rolls back."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


class RedisLimiter(Limiter):
    def __init__(self, url: str, scope: str, per_minute: int) -> None:
        super().__init__(scope, per_minute)
        # "async+": the library's asyncio storage for the same URL (its documented scheme);
        # its errors wrapped in one StorageError, whatever client it uses.
        self._limiter = FixedWindowRateLimiter(
            storage_from_string(f"async+{url}", wrap_exceptions=True))
        self._item = RateLimitItemPerMinute(per_minute)

    async def hit(self, address: str) -> bool:
        async with _reachable():
            return await self._limiter.hit(self._item, self.scope, address)

    async def spent(self, address: str) -> bool:
        async with _reachable():
            return not await self._limiter.test(self._item, self.scope, address)

    async def _reserve(self, address: str) -> float:
        async with _reachable():
            if not await self._limiter.hit(self._item, self.scope, address):
                raise Spent
            window = await self._limiter.get_window_stats(self._item, self.scope, address)
            return float(window.reset_time)


@asynccontextmanager
async def _reachable() -> AsyncIterator[None]:
    """Redis out of reach is an outage (503 with Retry-After), as the database's is."""
    try:
        yield
    except StorageError as error:
        raise Unavailable("redis") from error


class SharedPace:
    """A channel's sending pace, shared through Redis by every process that sends on it:
    `per_second` sends a second in all and `per_address` to one address, in moving
    windows, and a pause everyone keeps once the platform said "too many" (Telegram's
    429 retry_after). Without Redis each process keeps its own pace (bot.limits): a
    write to the database for every message sent would cost more than the send."""

    def __init__(self, url: str, channel: str, per_second: float, per_address: float) -> None:
        self._storage = cast(AsyncStorage, storage_from_string(f"async+{url}",
                                                               wrap_exceptions=True))
        self._window = MovingWindowRateLimiter(self._storage)
        self._all, self._one = _per_second(per_second), _per_second(per_address)
        self._channel = channel
        self._pause = f"pace/{channel}/pause"

    async def acquire(self, address: str) -> None:
        async with _reachable():
            for item, key in ((self._one, address), (self._all, "")):
                while not await self._window.hit(item, "pace", self._channel, key):
                    window = await self._window.get_window_stats(item, "pace",
                                                                 self._channel, key)
                    await asyncio.sleep(max(0.005, window.reset_time - time.time()))
            # Another process's pause lives in Redis: there is no event here to wait on.
            while (left := await self._paused()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(left)

    async def pause(self, seconds: float) -> None:
        async with _reachable():
            if seconds > await self._paused():
                await self._storage.clear(self._pause)
                await self._storage.incr(self._pause, max(1, math.ceil(seconds)))

    async def _paused(self) -> float:
        if not await self._storage.get(self._pause):
            return 0.0
        return max(0.0, float(await self._storage.get_expiry(self._pause)) - time.time())


def _per_second(rate: float) -> RateLimitItem:
    """`rate` a second as the library counts: n a second, or one every n seconds."""
    if rate >= 1:
        return RateLimitItemPerSecond(round(rate))
    return RateLimitItemPerSecond(1, round(1 / rate))


def limiter(scope: str, per_minute: int, db: Database, redis_url: str | None) -> Limiter:
    """In Redis when REDIS_URL is set, else in the database."""
    if redis_url:
        return RedisLimiter(redis_url, scope, per_minute)
    return DatabaseLimiter(db, scope, per_minute)
