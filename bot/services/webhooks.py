"""The outbound webhook: events from the outbox (storage/outbox.py) POSTed to
OUTBOUND_WEBHOOK_URL, signed, in order per customer, retried until the receiver takes them.

A tick claims due events in small batches, each the oldest undelivered one of its key (so a
customer's events never overtake each other), holds them for a lease (SKIP LOCKED on
PostgreSQL: two processes never send one at once), POSTs them outside any transaction and
records each outcome: 2xx delivered, anything else retried with exponential backoff and
jitter, for as long as it takes. A process that dies mid-send leaves its events to be sent
again after the lease: delivery is at least once, and receivers dedupe by
X-Otklik-Delivery."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bot.observability import Metrics
from bot.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from storage.repositories.outbox import Outbox
from storage.uow import Database, Store

log = logging.getLogger(__name__)
EVENT_HEADER = "X-Otklik-Event"
DELIVERY_HEADER = "X-Otklik-Delivery"
FIRST_RETRY = 10.0  # seconds; doubles with each failed attempt
LONGEST_WAIT = 3600.0
KEEP_DELIVERED = timedelta(days=7)


class Unsendable(str):
    """Why an event could not be made into a request (its body): no retry would mend it."""

    __slots__ = ()


class WebhookSender:
    def __init__(self, db: Database, url: str, secret: bytes, *,
                 clock: Callable[[], datetime] | None = None, rng: random.Random | None = None,
                 metrics: Metrics | None = None, batch: int = 20, timeout: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self._db = db
        self._url = url
        self._secret = secret
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._metrics = metrics
        self._batch = batch
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # Longer than any send of a batch can take (they go concurrently, each timed out).
        self._lease = timedelta(seconds=max(60.0, 3 * timeout))
        self._session = session
        self._own_session = session is None

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def tick(self) -> int:
        """Send what is due, batch after batch, until nothing is; returns how many were
        delivered. The next batch may hold the next event of a key just delivered."""
        delivered = 0
        while True:
            now = self._clock()
            rows = await self._db.write(functools.partial(
                _claim, now=now, limit=self._batch, lease=now + self._lease))
            if not rows:
                return delivered
            errors = await asyncio.gather(*(self._post(row) for row in rows))
            await self._db.write(functools.partial(self._record, rows, errors, self._clock()))
            delivered += errors.count(None)

    async def prune(self) -> int:
        """Forget events delivered more than KEEP_DELIVERED ago."""
        before = self._clock() - KEEP_DELIVERED
        return await self._db.write(lambda store: store.outbox.prune(before))

    def body(self, row: Any) -> bytes:
        return json.dumps({"id": row.id, "event": row.event,
                           "occurred_at": row.created_at.isoformat(), "data": row.payload},
                          ensure_ascii=False, separators=(",", ":")).encode()

    async def _post(self, row: Any) -> str | None:
        """POST one event; None if the receiver took it, else why not (a status or an
        exception's class: never a body, which could echo what we sent)."""
        try:
            body = self.body(row)
        except Exception as exc:  # it would fail the same way every time: a poison
            return Unsendable(type(exc).__name__)
        stamp = str(int(self._clock().timestamp()))
        headers = {"Content-Type": "application/json", EVENT_HEADER: row.event,
                   DELIVERY_HEADER: str(row.id), TIMESTAMP_HEADER: stamp,
                   SIGNATURE_HEADER: signature(self._secret, stamp, body)}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(self._url, data=body, headers=headers,
                                          timeout=self._timeout,
                                          allow_redirects=False) as response:
                error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        if self._metrics is not None:
            self._metrics.webhooks.labels("failed" if error else "delivered").inc()
        return error

    def _record(self, rows: Sequence[Any], errors: Sequence[str | None], now: datetime,
                store: Store) -> None:
        events = store.outbox

        def record_each(batch: Sequence[tuple[Any, str | None]]) -> list[None]:
            for row, error in batch:
                self._record_one(events, row, error, now)
            return []

        def set_aside(item: tuple[Any, str | None], error: Exception) -> None:
            # Left as it is, it would be sent again after the lease, and again.
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
            log.warning("webhook event %s (%s) not delivered: %s; attempt %s, next in %.0f s",
                        row.id, row.event, error, row.attempts + 1, wait)
            events.failed(row.id, error, now + timedelta(seconds=wait))

    @staticmethod
    def _set_aside(events: Outbox, row: Any, why: str, now: datetime) -> None:
        log.error("webhook event %s (%s) set aside, never to be sent: %s", row.id, row.event,
                  why)
        events.set_aside(row.id, f"set aside: {why}", now)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones: 10 s doubling up to
        an hour, less up to a fifth at random, so a receiver back from an outage is not hit
        by every waiting event in the same second."""
        wait: float = min(LONGEST_WAIT, FIRST_RETRY * 2 ** min(attempts, 20))
        return wait * self._rng.uniform(0.8, 1.0)


def _claim(store: Store, *, now: datetime, limit: int, lease: datetime) -> list[Any]:
    return store.outbox.claim(now, limit, lease)
