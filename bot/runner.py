"""`otklik run`: everything in one process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.bootstrap import Product, build
from bot.commands import configure_logging, freeze_heap
from bot.examples import EXAMPLES
from bot.scheduler import build_scheduler, digest_trigger
from bot.services.campaigns import CampaignFileError
from bot.services.scripts import CAMPAIGNS_FILE, InvalidScripts, counted, load_scripts
from bot.services.triggers import TriggerService
from bot.settings import Settings
from handlers.telegram import admin
from handlers.telegram import app as telegram
from handlers.whatsapp import channel as whatsapp
from storage.db import create_engine
from storage.migrate import upgrade_async

log = logging.getLogger("otklik")


async def surveys_dir_of(settings: Settings, triggers: TriggerService) -> Path | None:
    """The folder to load scripts from: SURVEYS_DIR when set (a missing one is an error);
    else ./surveys if there is one; else, with no script in the database either, the
    packaged examples — said loudly, a production install must not run on them unseen;
    else none (the database's scripts serve)."""
    if "surveys_dir" in settings.model_fields_set or settings.surveys_dir.is_dir():
        return settings.surveys_dir
    if await triggers.active_surveys():
        log.info("surveys: no %s folder; serving the scripts stored in the database",
                 settings.surveys_dir)
        return None
    log.warning("surveys: no %s folder and no script in the database: starting on the "
                "EXAMPLE surveys shipped with Otklik (%s). Write your own: `otklik init`, "
                "then SURVEYS_DIR", settings.surveys_dir, EXAMPLES)
    return EXAMPLES


def what_is_on(product: Product, surveys: int, campaigns: int) -> list[str]:
    """Start-up's account of this process: what is on, and why what is off is off."""
    settings, services = product.settings, product.services
    engine = product.engine
    database = (f"SQLite {engine.url.database}" if engine.dialect.name == "sqlite"
                else f"PostgreSQL {engine.url.host}/{engine.url.database}")  # no password
    return [
        f"database: {database}",
        "Telegram: " + ("on, webhook" if product.telegram and settings.webhook_url else
                        "on, long polling" if product.telegram else
                        "off (BOT_TOKEN is not set)"),
        "team chat: " + ("on" if services.team is not None else
                         "off (ADMIN_CHAT_ID is not set)" if product.telegram else
                         "off (needs BOT_TOKEN and ADMIN_CHAT_ID)"),
        "WhatsApp: " + (f"on, {whatsapp.PATH} (template {settings.whatsapp_template})"
                        if whatsapp.configured(settings) else
                        "off (WHATSAPP_TOKEN is not set)"),
        "e-mail: " + ("on" if product.smtp is not None else "off (SMTP_URL is not set)"),
        "web pages and widget: on",
        "dashboard: " + ("on, /admin/" if settings.admin_token is not None else
                         "off (ADMIN_TOKEN is not set)"),
        "outbound webhook: " + ("on" if product.webhooks is not None else
                                "off (OUTBOUND_WEBHOOK_URL is not set)"),
        f"scheduler: on (dispatch every {settings.dispatch_interval}s)"
        if product.dispatcher is not None else
        "scheduler: on (no channel to send on: a trigger is suppressed, no_channel, unless "
        "it asks for a link)",
        f"loaded: {counted(surveys, 'survey')}, {counted(campaigns, 'campaign')}",
    ]


async def run(settings: Settings) -> int:
    """Everything in one process: migrations, the scripts in SURVEYS_DIR, the HTTP server,
    the scheduler (dispatcher, reminders, campaigns, the outbox's retries) and the Telegram
    bot when BOT_TOKEN is set. Stops cleanly on SIGINT or SIGTERM."""
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
    try:
        await upgrade_async(settings.database_url)
    except Exception as error:  # one line, not a traceback: the operator's to mend
        cause = getattr(error, "orig", None) or error
        print(f"otklik: the database at DATABASE_URL cannot be opened "
              f"({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})",
              file=sys.stderr)
        return 1
    engine = create_engine(settings.database_url)
    product: Product | None = None
    runner: web.AppRunner | None = None
    polling: asyncio.Task[object] | None = None
    scheduler: AsyncIOScheduler | None = None
    try:
        product = await build(settings, engine)
        services = product.services
        surveys_dir = await surveys_dir_of(settings, services.triggers)
        try:
            loaded = (await load_scripts(services.db, [surveys_dir], actor="startup",
                                         now=datetime.now(UTC)) if surveys_dir else [])
            campaigns_file = settings.campaigns_file or (
                surveys_dir / CAMPAIGNS_FILE if surveys_dir else None)
            names = (await services.campaigns.load_file(campaigns_file)
                     if campaigns_file is not None and campaigns_file.is_file() else [])
        except InvalidScripts as exc:
            print("\n".join(exc.lines), file=sys.stderr)
            return 1
        except CampaignFileError as exc:
            print(exc, file=sys.stderr)
            return 1
        # What is served: the scripts just loaded, or those stored before (no folder).
        served = [f"{s.survey_id} v{s.version}" for s in loaded] or [
            f"{script.id} v{script.version}" for script in
            await services.triggers.active_surveys()]
        log.info("surveys: %s", ", ".join(served) or "none")
        if names:
            log.info("campaigns from %s: %s", campaigns_file, ", ".join(names))
        runner = web.AppRunner(product.web, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        except OSError as error:
            print(f"otklik: cannot listen on {settings.http_host}:{settings.http_port} "
                  f"(HTTP_HOST, HTTP_PORT): "
                  f"{os.strerror(error.errno).lower() if error.errno else error}",
                  file=sys.stderr)
            return 1
        log.info("serving on http://%s:%s (health: /healthz, API: /openapi.json)",
                 settings.http_host, settings.http_port)
        tg = product.telegram
        overdue = (functools.partial(admin.resend_overdue, tg.bot, settings, services.alerts)
                   if tg is not None and settings.admin_chat_id is not None else None)
        digest = None
        if product.digest is not None:
            digest = (digest_trigger(settings.digest, settings.digest_time,
                                     settings.digest_timezone), product.digest.run)
        scheduler = build_scheduler(product.dispatcher, services.campaigns, services.db,
                                    interval=settings.dispatch_interval, overdue=overdue,
                                    effects=product.effects, digest=digest)
        scheduler.start()
        if tg is not None:
            polling = await telegram.start(settings, tg.updates, tg.bot, tg.i18n)
        for line in what_is_on(product, len(served), len(names)):
            log.info("%s", line)
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
        if product is not None:
            await product.close()
        await engine.dispose()
    return 0
