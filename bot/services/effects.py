"""Side effects after the commit, in one place. A service writes them as outbox events in
the transaction that causes them (storage.outbox); the process that committed carries them
out at once (`after_commit`), and each sink's runner retries, per event, what was left
undone by a failure or a crash (`tick`, on the scheduler). The outbox row is the record:
an event is carried out at least once, in order per key.

"At once" means when the request that caused them has been answered: a channel's handling
runs inside `carried_out_after()` (an aiogram middleware, an aiohttp middleware), so the
customer's reply goes first and the team hears of it right after, in the same request.
Outside one (the scheduler, the command line) they go in a task of their own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from storage.repositories.outbox import Outbox
from storage.uow import Database, Store

log = logging.getLogger(__name__)
FIRST_RETRY = 10.0  # seconds; doubles with each failed attempt
LONGEST_WAIT = 3600.0
KEEP_DELIVERED = timedelta(days=7)

Job = Callable[[], Coroutine[Any, Any, object]]
_collected: ContextVar[list[Job] | None] = ContextVar("otklik_effects", default=None)
_background: set[asyncio.Task[object]] = set()


def after_commit(job: Job) -> None:
    """Carry out `job` once the request under way is answered (see the module's doc)."""
    jobs = _collected.get()
    if jobs is not None:
        jobs.append(job)
        return
    task: asyncio.Task[object] = asyncio.get_running_loop().create_task(job())
    _background.add(task)
    task.add_done_callback(_background.discard)


@contextlib.asynccontextmanager
async def carried_out_after() -> AsyncIterator[None]:
    """Around a request's handling: what its transactions queued is carried out when it
    ends, whatever its outcome (what was committed stands)."""
    jobs: list[Job] = []
    token = _collected.set(jobs)
    try:
        yield
    finally:
        _collected.reset(token)
        for job in jobs:
            await job()


class Unsendable(str):
    """Why an event cannot be carried out (its body, its payload): no retry would mend it."""

    __slots__ = ()


class OutboxRunner:
    """Carries out one sink's events: `deliver` says for each whether it went (None) or
    why not. A failure is retried with exponential backoff and jitter, for as long as it
    takes; an Unsendable one is set aside. Claimed events are held for a lease (SKIP
    LOCKED on PostgreSQL: two processes never carry out one at once)."""

    sink: ClassVar[str]
    what: ClassVar[str] = "event"  # for the log

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None,
                 rng: random.Random | None = None, batch: int = 20,
                 lease: timedelta = timedelta(seconds=60)) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._batch = batch
        # Longer than any delivery of a batch can take (they go concurrently, each timed out).
        self._lease = lease

    async def deliver(self, row: Any) -> str | None:
        raise NotImplementedError

    async def tick(self) -> int:
        """Carry out what is due, batch after batch, until nothing is; returns how many
        went. The next batch may hold the next event of a key just carried out."""
        delivered = 0
        while (went := await self._batch_of(None)) is not None:
            delivered += went
        return delivered

    async def carry_out(self, ids: Collection[int]) -> None:
        """These events now, those of them whose turn it is (an earlier one of their key
        still waiting keeps them waiting); never raises: what fails is the tick's."""
        try:
            await self._batch_of(ids)
        except Exception as error:  # the customer's request is answered: only log it
            log.warning("%s %s not carried out at once (%s): left for the retries",
                        self.what, sorted(ids), type(error).__name__)

    async def _batch_of(self, ids: Collection[int] | None) -> int | None:
        """One batch (of `ids` only, if given): how many went, None when none was due."""
        now = self._clock()
        rows = await self._db.write(functools.partial(
            _claim, sink=self.sink, now=now, limit=self._batch, lease=now + self._lease,
            ids=ids))
        if not rows:
            return None
        errors = await asyncio.gather(*(self._delivered(row) for row in rows))
        await self._db.write(functools.partial(self._record, rows, errors, self._clock()))
        return errors.count(None)

    async def _delivered(self, row: Any) -> str | None:
        try:
            return await self.deliver(row)
        except Exception as error:  # a defect of ours for this event: not the others'
            log.exception("%s %s (%s) failed", self.what, row.id, row.event)
            return type(error).__name__

    async def prune(self) -> int:
        """Forget events delivered more than KEEP_DELIVERED ago."""
        before = self._clock() - KEEP_DELIVERED
        return await self._db.write(lambda store: store.outbox.prune(before))

    def _record(self, rows: Sequence[Any], errors: Sequence[str | None], now: datetime,
                store: Store) -> None:
        events = store.outbox

        def record_each(batch: Sequence[tuple[Any, str | None]]) -> list[None]:
            for row, error in batch:
                self._record_one(events, row, error, now)
            return []

        def set_aside(item: tuple[Any, str | None], error: Exception) -> None:
            # Left as it is, it would be carried out again after the lease, and again.
            self._set_aside(events, item[0], type(error).__name__, now)

        events.each_alone(list(zip(rows, errors, strict=True)), record_each, set_aside)

    def _record_one(self, events: Outbox, row: Any, error: str | None,
                    now: datetime) -> None:
        if error is None:
            events.delivered(row.id, now)
        elif isinstance(error, Unsendable):
            self._set_aside(events, row, error, now)
        else:
            wait = self.backoff(row.attempts)
            log.warning("%s %s (%s) not delivered: %s; attempt %s, next in %.0f s",
                        self.what, row.id, row.event, error, row.attempts + 1, wait)
            events.failed(row.id, error, now + timedelta(seconds=wait))

    def _set_aside(self, events: Outbox, row: Any, why: str, now: datetime) -> None:
        log.error("%s %s (%s) set aside, never to be sent: %s", self.what, row.id, row.event,
                  why)
        events.set_aside(row.id, f"set aside: {why}", now)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones: 10 s doubling up to
        an hour, less up to a fifth at random, so a receiver back from an outage is not hit
        by every waiting event in the same second."""
        wait: float = min(LONGEST_WAIT, FIRST_RETRY * 2 ** min(attempts, 20))
        return wait * self._rng.uniform(0.8, 1.0)


def _claim(store: Store, *, sink: str, now: datetime, limit: int, lease: datetime,
           ids: Collection[int] | None) -> list[Any]:
    return store.outbox.claim(now, limit, lease, sink=sink, ids=ids)
