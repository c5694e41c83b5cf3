"""The Telegram bot: built once from the settings, fed by long polling or by Telegram's
webhook on the product's own HTTP server.

Every Bot API call goes through `Resilient`: 429 waits `retry_after`, network and server
errors are retried with backoff (for up to a minute), and 403 (the customer blocked the
bot) marks the chat unreachable so nothing more is sent there."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import (
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import BotCommand, BotCommandScopeDefault, ErrorEvent, TelegramObject, Update
from aiogram.utils.i18n import I18n
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.services.admin import AdminService
from bot.services.alerts import AlertService
from bot.services.availability import Outage, outage
from bot.services.effects import carried_out_after
from bot.services.exports import ExportService
from bot.services.reports import ReportService
from bot.services.surveys import SurveyService, Who
from bot.settings import Settings
from bot.signing import same_secret
from bot.texts import DOMAIN, LOCALES
from handlers.telegram import admin, customer, reports
from handlers.telegram.outage import WaitForDatabase

log = logging.getLogger(__name__)
COMMANDS = ("start", "language", "stop", "help")
COMMAND_TEXTS = {
    "start": "Answer the survey",
    "language": "Change the language",
    "stop": "Stop receiving surveys",
    "help": "How this bot works",
}


def build_i18n() -> I18n:
    return I18n(path=LOCALES, default_locale="en", domain=DOMAIN)


class Resilient(BaseRequestMiddleware):
    """Retries what Telegram asks us to retry, and stops writing to who blocked us.

    A call is tried until it goes through, `attempts` are made or the next wait would end
    more than `patience` seconds after the first try: a reply to a customer outlives a
    minute of Telegram's 429s, 5xx and timeouts instead of being lost after a few tries."""

    def __init__(self, on_blocked: Callable[[int], Awaitable[None]], *,
                 attempts: int | None = None, backoff: float = 0.5, max_backoff: float = 5.0,
                 max_wait: float = 60.0, patience: float = 60.0) -> None:
        self._on_blocked = on_blocked
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_wait = max_wait
        self._patience = patience

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._patience
        attempt = 0
        while True:
            attempt += 1
            last = attempt == self._attempts
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                wait = float(error.retry_after)
                if last or wait > self._max_wait or loop.time() + wait > deadline:
                    raise
                log.warning("Telegram asked to wait %ss (%s)", error.retry_after,
                            type(method).__name__)
            except (TelegramNetworkError, TelegramServerError) as error:
                wait = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
                if last or loop.time() + wait > deadline:
                    raise
                log.warning("Telegram %s failed (%s); again in %.1fs", type(method).__name__,
                            type(error).__name__, wait)
            except TelegramForbiddenError:
                chat_id = getattr(method, "chat_id", None)
                if isinstance(chat_id, int):
                    await self._on_blocked(chat_id)
                raise
            await asyncio.sleep(wait)


class KeepResponseTypes(BaseRequestMiddleware):
    """Holds on to each `Response[T]` aiogram parses answers with. Pydantic caches such a
    parametrized class weakly and nothing else keeps it, so every garbage collection freed
    it and the next call built it again: ~5 ms of CPU, dozens of times a second under load."""

    def __init__(self) -> None:
        self._kept: dict[Any, type[Response[Any]]] = {}

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self._kept:
            self._kept[returning] = Response[returning]  # type: ignore[valid-type]
        return await make_request(bot, method)


def build_bot(settings: Settings, unreachable: Callable[[Who, str], Awaitable[None]], *,
              retry: bool = True) -> Bot:
    """The bot; with `retry=False` a failed call fails at once (the dispatcher's own bot,
    which reschedules instead of waiting). A customer who blocked it is marked unreachable
    through `unreachable` (bot.services.surveys.mark_unreachable)."""
    if settings.bot_token is None:
        raise ValueError("BOT_TOKEN is not set")
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))

    async def on_blocked(chat_id: int) -> None:
        await unreachable(Who("telegram", str(chat_id)), "blocked")
        log.info("a customer blocked the bot: their chat is marked unreachable")

    session.middleware(KeepResponseTypes())
    session.middleware(Resilient(on_blocked, attempts=None if retry else 1))
    return Bot(settings.bot_token.get_secret_value(), session=session,
               default=DefaultBotProperties(parse_mode="HTML"))


def build_dispatcher(settings: Settings, i18n: I18n, *, surveys: SurveyService,
                     alerts: AlertService, admin_service: AdminService,
                     reports_service: ReportService, exports: ExportService) -> Dispatcher:
    """Services go in as workflow data: handlers ask for them by parameter name."""
    dispatcher = Dispatcher(surveys=surveys, settings=settings, i18n=i18n, alerts=alerts,
                            admin=admin_service, reports=reports_service, exports=exports)
    dispatcher.include_routers(admin.build_router(), reports.build_router(),
                               customer.build_router())
    # Outermost: what an update's handling queued for after its commits (a team alert)
    # goes once the customer has had their answer (bot.services.effects).
    dispatcher.update.outer_middleware(EffectsAfter())
    # Telegram sends a webhook's failed update again by itself: waiting long would only
    # hold back the updates behind it. With polling nobody would.
    dispatcher.update.outer_middleware(WaitForDatabase(5.0 if settings.webhook_url else 30.0))
    dispatcher.errors.register(on_error)
    return dispatcher


class EffectsAfter(BaseMiddleware):
    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        async with carried_out_after():
            return await handler(event, data)


TRANSIENT = (TelegramRetryAfter, TelegramServerError, TelegramNetworkError)


async def on_error(event: ErrorEvent, bot: Bot, i18n: I18n, settings: Settings) -> bool:
    """Whatever went wrong stays in our log (its kind and the update's id: no personal
    data); the customer gets a short apology, never a traceback. An update that still
    finds the database unavailable (after WaitForDatabase) fails the webhook's request
    instead, so that Telegram sends it again."""
    update = event.update
    if (kind := outage(event.exception)) is not None:
        log.error("update %s failed: %s (%s)", update.update_id, kind.value,
                  type(event.exception).__name__)
        if kind is Outage.UNAVAILABLE and settings.webhook_url:
            raise SkipHandler  # unhandled: the webhook answers 503 (handlers/web/outage)
    elif isinstance(event.exception, TRANSIENT) and settings.webhook_url:
        # Telegram refused our reply past Resilient's patience: an apology would meet the
        # same refusal. Unhandled, the webhook answers 500 and Telegram sends the update
        # again later; the answer is taken once and the question is shown then.
        log.error("update %s failed: Telegram refused the reply (%s)", update.update_id,
                  type(event.exception).__name__)
        raise SkipHandler
    else:
        # Where it failed, not the exception's message: that may quote what the customer
        # wrote.
        log.error("update %s failed: %s\n%s", update.update_id,
                  type(event.exception).__name__,
                  "".join(traceback.format_tb(event.exception.__traceback__)).rstrip())
    if isinstance(event.exception, TelegramForbiddenError):
        return True
    chat, user = None, None
    if update.message is not None:
        chat, user = update.message.chat, update.message.from_user
    elif update.callback_query is not None and update.callback_query.message is not None:
        chat, user = update.callback_query.message.chat, update.callback_query.from_user
    if chat is None or chat.type != "private":
        return True
    locale = customer.ui_locale(user.language_code if user else None)
    try:
        if update.callback_query is not None:
            await update.callback_query.answer()
        await bot.send_message(chat.id, i18n.gettext(
            "Sorry, something went wrong on our side. Please try again in a minute.",
            locale=locale))
    except Exception as error:  # the apology is best effort
        log.warning("could not apologise for update %s: %s", update.update_id,
                    type(error).__name__)
    return True


async def set_commands(bot: Bot, i18n: I18n) -> None:
    """The command menu, in English and (for Russian-speaking users) in Russian."""
    for locale in ("en", "ru"):
        commands = [BotCommand(command=name,
                               description=i18n.gettext(COMMAND_TEXTS[name], locale=locale))
                    for name in COMMANDS]
        await bot.set_my_commands(commands, scope=BotCommandScopeDefault(),
                                  language_code=None if locale == "en" else locale)


def webhook_path(settings: Settings) -> str:
    return urlsplit(settings.webhook_url or "").path or "/telegram/webhook"


class Webhook(SimpleRequestHandler):
    """aiogram's handler, but a body that is not an update (not JSON, or JSON no Update
    validates) is a 400, logged by its kind alone; it was a 500 whose traceback quoted the
    body, customer's texts and all. Only Telegram, or someone holding the secret, can send
    one: the 400 shows in getWebhookInfo's last_error_message."""

    async def _handle_request(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            update = Update.model_validate(await request.json(loads=bot.session.json_loads),
                                           context={"bot": bot})
        except (ValueError, RecursionError) as error:  # ValidationError is a ValueError
            log.warning("webhook: the body is not a Telegram update (%s)",
                        type(error).__name__)
            return web.json_response({"ok": False, "description": "not a Telegram update"},
                                     status=400)
        result: TelegramMethod[Any] | None = await self.dispatcher.feed_webhook_update(
            bot, update, **self.data)
        return web.Response(body=self._build_response_writer(bot=bot, result=result))

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        # aiogram's own check compares text: a header that is not ASCII raised (a 500).
        return self.secret_token is not None and same_secret(telegram_secret_token,
                                                             self.secret_token)


def add_webhook(app: web.Application, settings: Settings, dispatcher: Dispatcher,
                bot: Bot) -> None:
    """Serve Telegram's webhook on the product's app. Telegram's secret-token header is
    checked by aiogram; the update is handled before the answer, so one that fails is
    sent again by Telegram (and claimed once: see SurveyService)."""
    if settings.webhook_secret is None:
        raise ValueError("WEBHOOK_SECRET is required with WEBHOOK_URL")
    Webhook(dispatcher, bot, handle_in_background=False,
            secret_token=settings.webhook_secret.get_secret_value(),
            ).register(app, path=webhook_path(settings))


async def start(settings: Settings, dispatcher: Dispatcher, bot: Bot, i18n: I18n
                ) -> asyncio.Task[Any] | None:
    """Register commands, then set the webhook, or start long polling in a task."""
    await set_commands(bot, i18n)
    allowed = dispatcher.resolve_used_update_types()
    if settings.webhook_url:
        assert settings.webhook_secret is not None
        await bot.set_webhook(settings.webhook_url, allowed_updates=allowed,
                              secret_token=settings.webhook_secret.get_secret_value())
        log.info("Telegram: webhook set")
        return None
    await bot.delete_webhook()
    log.info("Telegram: long polling")
    return asyncio.create_task(dispatcher.start_polling(
        bot, handle_signals=False, close_bot_session=False, allowed_updates=allowed))
