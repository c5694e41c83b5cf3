"""The Telegram channel as `otklik run` builds it, fed real updates through the real
Dispatcher, talking over HTTP to a Bot API stand-in on loopback."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import telegram
from bot.app import build_web_app
from bot.services.admin import AdminService
from bot.services.alerts import AlertService
from bot.services.exports import ExportService
from bot.services.reports import ReportService
from bot.services.surveys import SurveyService
from bot.settings import Settings
from handlers.replies import ChannelReplier
from handlers.telegram import admin
from storage.db import create_engine, session_factory
from storage.models import AnswerRow
from storage.uow import Database, UnitOfWork
from testkit.botapi import BotApiStub, iter_buttons
from testkit.migrated import load_examples, migrate

SURVEYS = Path(__file__).resolve().parents[2] / "surveys"
ADMIN_CHAT = -1001234
TOKEN = "123456:TEST-token"

JSON = dict[str, Any]


class Product:
    """One process's Telegram side: its own engine, service, bot and dispatcher."""

    def __init__(self, api: BotApiStub, settings: Settings, engine: AsyncEngine,
                 surveys: SurveyService | None = None, alerts: AlertService | None = None
                 ) -> None:
        self.api = api
        self.settings = settings
        self.engine = engine
        self.factory = session_factory(engine)
        self.surveys = surveys or SurveyService(Database(self.factory))
        self.i18n = telegram.build_i18n()
        self.bot: Bot = telegram.build_bot(settings, self.surveys)
        self.dispatcher: Dispatcher = telegram.build_dispatcher(settings, self.surveys,
                                                                self.i18n)
        # As bot/runner.py wires it: the team's replies go out as this process's bot.
        self.alerts = alerts or AlertService(Database(self.factory))
        self.alerts.replier = ChannelReplier(self.bot, None, settings.mail_from)
        self.alerts.on_resolved = functools.partial(admin.show_resolved, self.bot, settings)
        self.dispatcher["alerts"] = self.alerts
        self.dispatcher["admin"] = AdminService(Database(self.factory))
        self.dispatcher["reports"] = ReportService(Database(self.factory))
        self.dispatcher["exports"] = ExportService(Database(self.factory))

    async def feed(self, update: JSON) -> None:
        await self.dispatcher.feed_raw_update(self.bot, update)

    async def send(self, chat: int, text: str, **user: Any) -> JSON:
        update = self.api.message_update(chat, text, **user)
        await self.feed(update)
        return update

    async def tap(self, chat: int, label: str, *, message_id: int | None = None) -> JSON:
        """Press the button labelled `label` (its text, or the start of it) on the bot's
        latest message that shows one."""
        for message in reversed(self.api.messages(chat)):
            if message_id is not None and message["message_id"] != message_id:
                continue
            for button in iter_buttons(message):
                if button["text"] == label or button["text"].startswith(label + " "):
                    update = self.api.callback_update(chat, button["callback_data"],
                                                      message["message_id"])
                    await self.feed(update)
                    return update
        raise AssertionError(f"no button {label!r} in chat {chat}\n{self.api.transcript()}")

    def texts(self, chat: int) -> list[str]:
        return [params["text"] for params in self.api.sent(chat)]

    async def answers(self) -> list[tuple[str, int | None, list[str] | None, str | None]]:
        async with UnitOfWork(self.factory) as uow:
            rows = await uow.session.scalars(select(AnswerRow).order_by(AnswerRow.id))
            return [(a.step_id, a.score, a.choices, a.text) for a in rows]

    async def close(self) -> None:
        await close_bot(self.bot)


async def close_bot(bot: Bot) -> None:
    """bot.session.close() without the quarter of a second it then waits for TLS
    connections to end: the Bot API stub speaks plain HTTP."""
    assert isinstance(bot.session, AiohttpSession)
    await (await bot.session.create_session()).close()


def settings_for(db_url: str, api: BotApiStub, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": db_url, "bot_token": SecretStr(TOKEN),
                              "telegram_api_base": api.base_url, "surveys_dir": SURVEYS,
                              "admin_chat_id": ADMIN_CHAT, **overrides}
    return Settings(**values)


@asynccontextmanager
async def running(db_url: str, api: BotApiStub, **overrides: Any) -> AsyncIterator[Product]:
    """Migrated database, example surveys loaded, one process over them."""
    settings = settings_for(db_url, api, **overrides)
    await migrate(db_url)
    engine = create_engine(db_url)
    await load_examples(session_factory(engine), datetime.now(UTC))
    product = Product(api, settings, engine)
    try:
        yield product
    finally:
        await product.close()
        await engine.dispose()


WEBHOOK_SECRET = "s3cret"


@asynccontextmanager
async def webhook(product: Product, bot: Bot | None = None) -> AsyncIterator[str]:
    """The product's web app with Telegram's webhook (of `bot`, the product's by default) on
    a loopback server; yields the webhook's URL. The product runs with
    webhook_url=…/tg/hook and webhook_secret=WEBHOOK_SECRET."""
    app = build_web_app(product.settings, product.engine)
    telegram.add_webhook(app, product.settings, product.dispatcher, bot or product.bot)
    async with TestServer(app) as server:
        yield str(server.make_url("/tg/hook"))


def in_webhook_mode(db_url: str, api: BotApiStub) -> AbstractAsyncContextManager[Product]:
    return running(db_url, api, webhook_url="https://example.org/tg/hook",
                   webhook_secret=WEBHOOK_SECRET)
