"""What each command-line command does, over the real database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aiogram import Bot
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import telegram
from bot.app import build_services, build_web_app
from bot.dispatch import DeliveryDispatcher
from bot.limits import Limiter, RateLimited
from bot.scheduler import build_scheduler
from bot.services.campaigns import CampaignFileError
from bot.services.reports import format_report, survey_report
from bot.services.scripts import CAMPAIGNS_FILE, InvalidScripts, load_scripts
from bot.services.surveys import SurveyService
from bot.settings import Settings
from handlers.telegram.outbound import TelegramSender
from storage.db import create_engine, session_factory
from storage.errors import NotFound
from storage.migrate import upgrade, upgrade_async

log = logging.getLogger("otklik")


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every job run would be an INFO line: only APScheduler's warnings and errors.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(
        settings.log_level)))


def migrate(settings: Settings) -> int:
    configure_logging(settings)
    upgrade(settings.database_url)
    print("database is at the latest schema")
    return 0


async def load(settings: Settings, paths: Sequence[Path]) -> int:
    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        loaded = await load_scripts(session_factory(engine), paths, actor="cli",
                                    now=datetime.now(UTC))
    except InvalidScripts as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    for item in loaded:
        state = "stored as" if item.changed else "unchanged,"
        print(f"{item.path}: {item.survey_id} {state} version {item.version}")
    return 0


async def report(settings: Settings, survey_id: str, start: date | None, end: date | None,
                 channel: str | None) -> int:
    engine = create_engine(settings.database_url)
    try:
        result = await survey_report(session_factory(engine), survey_id, start=start, end=end,
                                     channel=channel)
    except NotFound as exc:
        print(f"otklik report: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(format_report(result, start=start, end=end, channel=channel), end="")
    return 0


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
    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    services = build_services(settings, engine)
    factory = services.factory
    runner: web.AppRunner | None = None
    bots: list[Bot] = []
    polling: asyncio.Task[object] | None = None
    scheduler: AsyncIOScheduler | None = None
    try:
        try:
            loaded = await load_scripts(factory, [settings.surveys_dir], actor="startup",
                                        now=datetime.now(UTC))
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
        app = build_web_app(settings, engine, services)
        dispatcher: DeliveryDispatcher | None = None
        if settings.bot_token is not None:
            surveys = SurveyService(factory)
            i18n = telegram.build_i18n()
            bot = telegram.build_bot(settings, surveys)
            sender_bot = build_sender_bot(settings, surveys)
            bots += [bot, sender_bot]
            updates = telegram.build_dispatcher(settings, surveys, i18n)
            if settings.webhook_url:
                telegram.add_webhook(app, settings, updates, bot)
            dispatcher = DeliveryDispatcher(
                factory, {"telegram": TelegramSender(sender_bot, i18n)},
                scripts=services.scripts, batch=settings.dispatch_batch,
                attempts=settings.send_attempts,
                backoff=timedelta(seconds=settings.retry_backoff),
                sending_timeout=timedelta(seconds=settings.sending_timeout))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        log.info("serving on http://%s:%s (health: /healthz, API: /openapi.json)",
                 settings.http_host, settings.http_port)
        scheduler = build_scheduler(dispatcher, services.campaigns, factory,
                                    interval=settings.dispatch_interval)
        scheduler.start()
        if settings.bot_token is not None:
            polling = await telegram.start(settings, updates, bot, i18n)
        else:
            log.info("Telegram: off (BOT_TOKEN is not set)")
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
        for each in bots:
            await each.session.close()
        await engine.dispose()
    return 0
