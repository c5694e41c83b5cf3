"""The product's HTTP API on a real loopback server over a migrated database with the
example surveys, its services on a clock the test moves; and a signed-request helper."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import bootstrap
from bot.bootstrap import Services, build_services, build_web_app
from bot.examples import EXAMPLES
from bot.settings import Settings
from handlers.api.core import signature
from storage.db import create_engine
from storage.models import DeliveryRow, TriggerRow
from testkit.botapi import close_bot
from testkit.clock import Clock
from testkit.migrated import load_examples, migrate

SURVEYS = EXAMPLES
ADMIN = "admin-token-for-tests"
SECRET = "trigger-secret-for-tests"
TOKEN = "123456:TEST-token"
# A Monday, 12:00 UTC: 15:00 in Moscow, outside every example survey's quiet hours.
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
JSON = dict[str, Any]


@dataclass
class Api:
    client: TestClient[Any, Any]
    clock: Clock
    engine: AsyncEngine
    services: Services
    settings: Settings
    # The whole process (bot.bootstrap.build), when it runs with a Telegram stand-in.
    product: bootstrap.Product | None = None

    async def post(self, path: str, body: Any, *, token: str | None = ADMIN,
                   headers: dict[str, str] | None = None) -> tuple[int, JSON]:
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(path, json=body, headers={**sent, **(headers or {})})
        return response.status, await response.json()

    async def signed(self, path: str, body: Any, *, secret: str = SECRET,
                     at: float | None = None) -> tuple[int, JSON]:
        raw = json.dumps(body).encode()
        stamp = str(int(at if at is not None else time.time()))
        response = await self.client.post(path, data=raw, headers={
            "Content-Type": "application/json", "X-Otklik-Timestamp": stamp,
            "X-Otklik-Signature": signature(secret.encode(), stamp, raw)})
        return response.status, await response.json()

    async def get(self, path: str, *, token: str | None = ADMIN) -> tuple[int, JSON]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.get(path, headers=headers)
        return response.status, await response.json()

    async def deliveries(self) -> list[DeliveryRow]:
        async with self.services.factory() as session:
            return list(await session.scalars(select(DeliveryRow).order_by(DeliveryRow.id)))

    async def trigger_count(self) -> int:
        async with self.services.factory() as session:
            return len(list(await session.scalars(select(TriggerRow.id))))


def trigger(key: str = "call-1", survey: str = "post_call_csat", **customer: Any) -> JSON:
    return {"survey": survey, "idempotency_key": key,
            "customer": {"external_id": "crm-42", "telegram_id": 4242, **customer},
            "context": {"agent_name": "Anna", "call_type": "support"}}


def settings_for(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None, "database_url": db_url, "admin_token": SecretStr(ADMIN),
        "trigger_secret": SecretStr(SECRET), "bot_token": SecretStr(TOKEN),
        "surveys_dir": SURVEYS,
        # Tests send wrong tokens on purpose, many from one address: test_security.py tests
        # the limit on them.
        "failed_attempts": 10_000, **overrides}
    return Settings(**values)


@asynccontextmanager
async def serving(db_url: str, now: datetime = NOON, channels: Sequence[str] | None = None,
                  *, telegram: bool = False, bot_username: str | None = None,
                  **overrides: Any) -> AsyncIterator[Api]:
    """The web app over the services. With `telegram` (and telegram_api_base pointing at a
    Bot API stand-in), the whole process as `otklik run` builds it (bot.bootstrap.build):
    its bot, updates' dispatcher, team chat and senders as well. `bot_username`: the bot
    deep links name, without one."""
    settings = settings_for(db_url, **overrides)
    await migrate(db_url)
    engine = create_engine(db_url)
    clock = Clock(now)
    product = None
    if telegram:
        product = await bootstrap.build(settings, engine, clock=clock, channels=channels)
        services, app = product.services, product.web
    else:
        services = build_services(settings, engine, clock=clock, channels=channels,
                                  bot_username=bot_username)
        app = build_web_app(settings, engine, services)
    await load_examples(services.factory, now)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client, clock, engine, services, settings, product)
    finally:
        await client.close()
        if product is not None:
            if product.telegram is not None:
                for bot in (product.telegram.bot, product.telegram.sender):
                    await close_bot(bot)
            await product.close()
        await engine.dispose()
