"""`otklik run`: everything in one process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
from datetime import UTC, datetime, timedelta

from aiogram import Bot
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import telegram
from bot.app import build_services, build_web_app
from bot.commands import configure_logging, freeze_heap
from bot.limits import Limiter, RateLimited
from bot.scheduler import build_scheduler, digest_trigger
from bot.services.campaigns import CampaignFileError
from bot.services.digest import Digest
from bot.services.dispatch import DeliveryDispatcher, Sender
from bot.services.scripts import CAMPAIGNS_FILE, InvalidScripts, load_scripts
from bot.services.surveys import Outcome, SurveyService
from bot.services.webhooks import WebhookSender
from bot.settings import Settings
from handlers.email.outbound import EmailSender, Smtp
from handlers.replies import ChannelReplier
from handlers.telegram import admin
from handlers.telegram.outbound import TelegramSender
from storage.db import create_engine
from storage.migrate import upgrade_async
from storage.uow import Database

log = logging.getLogger("otklik")


def build_sender_bot(settings: Settings, surveys: SurveyService) -> Bot:
    """The dispatcher's own Bot: its messages wait for Telegram's limits (shared by every
    unprompted send in this process), and its errors reach the dispatcher unretried, which
    reschedules them (a 429 pauses all sending for retry_after)."""
    bot = telegram.build_bot(settings, surveys, retry=False)
    bot.session.middleware(RateLimited(Limiter(settings.telegram_rate,
                                               settings.telegram_chat_rate)))
    return bot


async def run(settings: Settings) -> int:
    """Everything in one process: migrations, the scripts in SURVEYS_DIR, the HTTP server,
    the scheduler (dispatcher, reminders, campaigns) and the Telegram bot when BOT_TOKEN is
    set. Stops cleanly on SIGINT or SIGTERM."""
    configure_logging(settings)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if settings.webhook_url and settings.webhook_secret is None:
        print("WEBHOOK_SECRET is required with WEBHOOK_URL: Telegram's requests are "
              "authenticated by it", file=sys.stderr)
        return 2
    if settings.outbound_webhook_url and settings.outbound_webhook_secret is None:
        print("OUTBOUND_WEBHOOK_SECRET is required with OUTBOUND_WEBHOOK_URL: receivers "
              "verify the events by it", file=sys.stderr)
        return 2
    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    services = build_services(settings, engine)
    factory = services.factory
    runner: web.AppRunner | None = None
    bots: list[Bot] = []
    polling: asyncio.Task[object] | None = None
    scheduler: AsyncIOScheduler | None = None
    webhooks = None
    if settings.outbound_webhook_url and settings.outbound_webhook_secret is not None:
        webhooks = WebhookSender(Database(factory), settings.outbound_webhook_url,
                                 settings.outbound_webhook_secret.get_secret_value().encode(),
                                 metrics=services.metrics)
    try:
        try:
            loaded = await load_scripts(Database(factory), [settings.surveys_dir],
                                        actor="startup", now=datetime.now(UTC))
            campaigns_file = settings.campaigns_file or settings.surveys_dir / CAMPAIGNS_FILE
            names = (await services.campaigns.load_file(campaigns_file)
                     if campaigns_file.is_file() else [])
        except InvalidScripts as exc:
            print("\n".join(exc.lines), file=sys.stderr)
            return 1
        except CampaignFileError as exc:
            print(exc, file=sys.stderr)
            return 1
        log.info("surveys: %s", ", ".join(f"{s.survey_id} v{s.version}" for s in loaded))
        if names:
            log.info("campaigns from %s: %s", campaigns_file, ", ".join(names))
        surveys = services.surveys
        senders: dict[str, Sender] = {}
        notify = None
        reply_bot: Bot | None = None  # the team's replies go as the bot, when there is one
        smtp = Smtp.from_url(settings.smtp_url.get_secret_value()) if settings.smtp_url else None
        if settings.bot_token is not None:
            i18n = telegram.build_i18n()
            bot = reply_bot = telegram.build_bot(settings, surveys)
            sender_bot = build_sender_bot(settings, surveys)
            bots += [bot, sender_bot]
            updates = telegram.build_dispatcher(settings, surveys, i18n)
            updates["alerts"] = services.alerts
            updates["admin"] = services.admin
            updates["reports"] = services.reports
            updates["exports"] = services.exports
            services.alerts.on_resolved = functools.partial(admin.show_resolved, bot, settings)
            senders["telegram"] = TelegramSender(sender_bot, i18n)

            async def notify(outcome: Outcome) -> None:  # alerts from the web and e-mail
                await admin.notify(bot, settings, surveys, outcome)
        if smtp is not None:
            senders["email"] = EmailSender(smtp, settings.mail_from, services.links)
        services.alerts.replier = ChannelReplier(reply_bot, smtp, settings.mail_from)
        app = build_web_app(settings, engine, services, notify)
        if settings.bot_token is not None and settings.webhook_url:
            telegram.add_webhook(app, settings, updates, bot)
        dispatcher = DeliveryDispatcher(
            Database(factory), senders, scripts=services.scripts, batch=settings.dispatch_batch,
            attempts=settings.send_attempts, backoff=timedelta(seconds=settings.retry_backoff),
            sending_timeout=timedelta(seconds=settings.sending_timeout),
            metrics=services.metrics) if senders else None
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        log.info("serving on http://%s:%s (health: /healthz, API: /openapi.json)",
                 settings.http_host, settings.http_port)
        overdue = (functools.partial(admin.resend_overdue, reply_bot, settings, services.alerts)
                   if reply_bot is not None and settings.admin_chat_id is not None else None)
        digest = None
        if settings.digest != "off":
            digest = (digest_trigger(settings.digest, settings.digest_time,
                                     settings.digest_timezone),
                      Digest(Database(factory), cadence=settings.digest,
                             timezone=settings.digest_timezone, bot=reply_bot,
                             chat_id=settings.admin_chat_id, mailer=smtp,
                             mail_from=settings.mail_from, emails=settings.digest_emails).run)
        scheduler = build_scheduler(dispatcher, services.campaigns, factory,
                                    interval=settings.dispatch_interval, overdue=overdue,
                                    webhooks=webhooks, digest=digest)
        scheduler.start()
        if settings.bot_token is not None:
            polling = await telegram.start(settings, updates, bot, i18n)
            # Deep links name the bot: t.me/<username>?start=<token>
            services.links.bot_username = (await bot.get_me()).username
        else:
            log.info("Telegram: off (BOT_TOKEN is not set)")
        freeze_heap()
        await stop.wait()
        log.info("stopping")
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if polling is not None:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        if runner is not None:
            await runner.cleanup()
        if webhooks is not None:
            await webhooks.close()
        for each in bots:
            await each.session.close()
        await engine.dispose()
    return 0
