"""The Telegram channel as `otklik run` builds it, fed real updates through the real
Dispatcher, talking over HTTP to a Bot API stand-in on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, Dispatcher
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sqlalchemy import select

from bot import bootstrap
from bot.bootstrap import build_web_app
from bot.examples import EXAMPLES
from bot.settings import Settings
from handlers.telegram import app as telegram
from storage.db import create_engine, session_factory
from storage.models import AnswerRow
from testkit.botapi import BotApiStub, close_bot, iter_buttons
from testkit.migrated import load_examples, migrate

SURVEYS = EXAMPLES
ADMIN_CHAT = -1001234
TOKEN = "123456:TEST-token"

JSON = dict[str, Any]


class Product:
    """One process's Telegram side, as `otklik run` builds it (bot.bootstrap.build): its
    services, bot and updates' dispatcher; fed real updates."""

    def __init__(self, api: BotApiStub, built: bootstrap.Product) -> None:
        assert built.telegram is not None, "BOT_TOKEN is set for a Telegram product"
        self.api = api
        self.built = built
        self.settings = built.settings
        self.engine = built.engine
        self.factory = built.services.factory
        self.surveys = built.services.surveys
        self.alerts = built.services.alerts
        self.bot: Bot = built.telegram.bot
        self.dispatcher: Dispatcher = built.telegram.updates
        self.i18n = built.telegram.i18n

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
        async with self.factory() as session:
            rows = await session.scalars(select(AnswerRow).order_by(AnswerRow.id))
            return [(a.step_id, a.score, a.choices, a.text) for a in rows]

    async def close(self) -> None:
        await close_telegram(self.built)


async def close_telegram(built: bootstrap.Product) -> None:
    """The product's bots closed at once (close_bot), then the rest."""
    if built.telegram is not None:
        for bot in (built.telegram.bot, built.telegram.sender):
            await close_bot(bot)
    await built.close()


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
    product = Product(api, await bootstrap.build(settings, engine))
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
    app = build_web_app(product.settings, product.engine, product.built.services)
    telegram.add_webhook(app, product.settings, product.dispatcher, bot or product.bot)
    async with TestServer(app) as server:
        yield str(server.make_url("/tg/hook"))


def in_webhook_mode(db_url: str, api: BotApiStub) -> AbstractAsyncContextManager[Product]:
    return running(db_url, api, webhook_url="https://example.org/tg/hook",
                   webhook_secret=WEBHOOK_SECRET)
