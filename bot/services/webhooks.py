"""The outbound webhook: events from the outbox (storage/outbox.py) POSTed to
OUTBOUND_WEBHOOK_URL, signed, in order per customer, retried until the receiver takes them.

The runner of the outbox's webhook sink (bot/services/effects.py: claimed in order per key,
retried with backoff, set aside when unsendable): a 2xx is delivered, anything else is
retried. A process that dies mid-send leaves its events to be sent again after the lease:
delivery is at least once, and receivers dedupe by X-Otklik-Delivery."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from bot.observability import Instruments
from bot.services.effects import KEEP_DELIVERED, OutboxRunner, Unsendable
from bot.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from storage.outbox import WEBHOOK
from storage.uow import Database

EVENT_HEADER = "X-Otklik-Event"
DELIVERY_HEADER = "X-Otklik-Delivery"
__all__ = ["KEEP_DELIVERED", "Unsendable", "WebhookSender"]


class WebhookSender(OutboxRunner):
    sink = WEBHOOK
    what = "webhook event"

    def __init__(self, db: Database, url: str, secret: bytes, *,
                 clock: Callable[[], datetime] | None = None, rng: random.Random | None = None,
                 instruments: Instruments | None = None, batch: int = 20, timeout: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        # The lease is longer than any send of a batch can take (each is timed out).
        super().__init__(db, clock=clock, rng=rng, batch=batch,
                         lease=timedelta(seconds=max(60.0, 3 * timeout)))
        self._url = url
        self._secret = secret
        self._instruments = instruments
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def body(self, row: Any) -> bytes:
        return json.dumps({"id": row.id, "event": row.event,
                           "occurred_at": row.created_at.isoformat(), "data": row.payload},
                          ensure_ascii=False, separators=(",", ":")).encode()

    async def deliver(self, row: Any) -> str | None:
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
        if self._instruments is not None:
            self._instruments.webhooks.labels("failed" if error else "delivered").inc()
        return error
