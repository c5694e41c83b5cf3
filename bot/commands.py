"""What each command-line command does, over the real database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aiogram import Bot
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import telegram
from bot.app import build_web_app
from bot.services.reports import format_report, survey_report
from bot.services.scripts import InvalidScripts, load_scripts
from bot.services.surveys import SurveyService
from bot.settings import Settings
from storage.db import create_engine, session_factory
from storage.errors import NotFound
from storage.migrate import upgrade, upgrade_async
from storage.uow import UnitOfWork

log = logging.getLogger("otklik")


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


async def forget_old_events(factory: async_sessionmaker[AsyncSession], *,
                            every: float = 3600, keep: timedelta = timedelta(days=2)) -> None:
    """Telegram redelivers an update within a day, and numbers updates afresh after a quiet
    week: ids older than `keep` are dropped so a reused one is never taken for a repeat."""
    while True:
        async with UnitOfWork(factory) as uow:
            forgotten = await uow.events.prune(datetime.now(UTC) - keep)
            await uow.commit()
        log.debug("forgot %s old channel events", forgotten)
        await asyncio.sleep(every)


def freeze_heap() -> None:
    """Once started: move what start-up built (modules, SQLAlchemy's and pydantic's models,
    the parsed scripts) out of the garbage collector's sight. A full collection then walks
    only what serving allocates: on our 2-core VMs it took ~100 ms at a time, a tenth of
    the CPU under load."""
    gc.collect()
    gc.freeze()


async def run(settings: Settings) -> int:
    """Everything in one process: migrations, the scripts in SURVEYS_DIR, the HTTP server,
    and the Telegram bot when BOT_TOKEN is set. Stops cleanly on SIGINT or SIGTERM."""
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
    factory = session_factory(engine)
    runner: web.AppRunner | None = None
    bot: Bot | None = None
    polling: asyncio.Task[object] | None = None
    housekeeping: asyncio.Task[None] | None = None
    try:
        try:
            loaded = await load_scripts(factory, [settings.surveys_dir], actor="startup",
                                        now=datetime.now(UTC))
        except InvalidScripts as exc:
            print("\n".join(exc.lines), file=sys.stderr)
            return 1
        log.info("surveys: %s", ", ".join(f"{s.survey_id} v{s.version}" for s in loaded))
        app = build_web_app(settings, engine)
        if settings.bot_token is not None:
            surveys = SurveyService(factory)
            i18n = telegram.build_i18n()
            bot = telegram.build_bot(settings, surveys)
            dispatcher = telegram.build_dispatcher(settings, surveys, i18n)
            if settings.webhook_url:
                telegram.add_webhook(app, settings, dispatcher, bot)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        log.info("serving on http://%s:%s (health: /healthz)", settings.http_host,
                 settings.http_port)
        housekeeping = asyncio.create_task(forget_old_events(factory))
        if bot is not None:
            polling = await telegram.start(settings, dispatcher, bot, i18n)
        else:
            log.info("Telegram: off (BOT_TOKEN is not set)")
        freeze_heap()
        await stop.wait()
        log.info("stopping")
    finally:
        for task in (polling, housekeeping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if runner is not None:
            await runner.cleanup()
        if bot is not None:
            await bot.session.close()
        await engine.dispose()
    return 0
