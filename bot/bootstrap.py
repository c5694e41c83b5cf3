"""The composition root: every service, sender, bot and app of a process, built once from
Settings and wired at construction (nothing is configured afterwards). `build` is the
whole process as `otklik run` runs it (async: the bot says who it is, getMe, before the
links that name it exist); `build_services` and `build_web_app` are its parts, for a
process or a test that brings fakes of its own."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiogram import Bot, Dispatcher
from aiogram.utils.i18n import I18n
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.keys import (
    ADMIN,
    ALERTS,
    AVAILABILITY,
    CAMPAIGNS,
    CLOCK,
    EXPORTS,
    FIGURES,
    LINKS,
    RECEIPTS,
    REPORTS,
    SETTINGS,
    SURVEYS,
    TRIGGERS,
)
from bot.limits import Limiter, RateLimited
from bot.links import Links
from bot.observability import Instruments
from bot.ratelimit import SharedPace, limiter
from bot.services.admin import AdminService
from bot.services.alerts import AlertService, OnResolved, Replier
from bot.services.availability import Availability
from bot.services.campaigns import CampaignService
from bot.services.channels import Channel, Window
from bot.services.digest import Digest
from bot.services.dispatch import DeliveryDispatcher
from bot.services.effects import OutboxRunner, carried_out_after
from bot.services.exports import ExportService
from bot.services.metrics import MetricsService
from bot.services.receipts import Receipts
from bot.services.reports import ReportService
from bot.services.scripts import ScriptCache
from bot.services.surveys import SurveyService, mark_unreachable
from bot.services.team import TeamAlerts, TeamChat
from bot.services.triggers import SendPolicy, TriggerService
from bot.services.webhooks import WebhookSender
from bot.settings import Settings
from handlers import dashboard, html
from handlers.api import (
    alerts,
    answers,
    audit,
    campaigns,
    customers,
    health,
    observability,
    outage,
    surveys,
    throttle,
    triggers,
)
from handlers.api import core as api
from handlers.api import metrics as metrics_api
from handlers.api.core import Operation
from handlers.channels import Plugin
from handlers.email import bounces
from handlers.email import channel as email_channel
from handlers.email.channel import EmailChannel, Smtp
from handlers.email.replies import EmailReplier
from handlers.sms import channel as sms_channel
from handlers.sms import smsc as sms_smsc
from handlers.sms import twilio as sms_twilio
from handlers.telegram import admin
from handlers.telegram import app as telegram
from handlers.telegram import channel as telegram_channel
from handlers.telegram.channel import TelegramChannel
from handlers.telegram.replies import TelegramReplier
from handlers.web import channel as web_channel
from handlers.web import pages, widget
from handlers.whatsapp import channel as whatsapp_channel
from handlers.whatsapp import webhook as whatsapp_webhook
from storage.db import create_engine, session_factory
from storage.uow import Database

SENDERS = web.AppKey("senders", dict[str, Channel])  # those the channels attached
WEB, DASHBOARD = Path(pages.__file__).parent, Path(dashboard.__file__).parent
TEMPLATES = (WEB / "templates", DASHBOARD / "templates")


@dataclass(frozen=True, slots=True)
class Services:
    factory: async_sessionmaker[AsyncSession]
    db: Database
    scripts: ScriptCache
    triggers: TriggerService
    campaigns: CampaignService
    surveys: SurveyService
    links: Links
    admin: AdminService
    alerts: AlertService
    figures: MetricsService  # the CX metrics (Prometheus' are `instruments`)
    reports: ReportService
    exports: ExportService
    clock: Callable[[], datetime]  # "now" for every service: tests move it
    instruments: Instruments  # Prometheus' (bot.observability)
    team: TeamAlerts | None  # alerts and comments for the team chat, when there is one
    availability: Availability  # the database reachable, the gauges
    receipts: Receipts  # what channels report after a send (bounces)


# The channels, in the order a delivery tries them. A channel is a folder under handlers/
# and a line here (docs/adding-a-channel.md); tests/contract/ is the suite it passes.
CHANNELS: tuple[Plugin, ...] = (telegram_channel.PLUGIN, whatsapp_channel.PLUGIN,
                                sms_channel.PLUGIN, email_channel.PLUGIN, web_channel.PLUGIN)


def policy_of(settings: Settings) -> SendPolicy:
    """The channels this process can send on, in CHANNELS' order: those that write first
    and are configured here (Telegram with a bot token, e-mail with an SMTP server); a
    delivery is never scheduled for a channel nobody sends on."""
    channels = [plugin.spec.name for plugin in CHANNELS
                if plugin.spec.pushes and plugin.configured(settings)]
    return SendPolicy(channels=channels, throttle_days=settings.throttle_days)


def windows() -> dict[str, Window]:
    """The messaging windows of the channels that have one."""
    return {plugin.spec.name: plugin.spec.window for plugin in CHANNELS
            if plugin.spec.window is not None}


def channel_operations() -> list[Operation]:
    return [operation for plugin in CHANNELS for operation in plugin.operations]


def openapi(server: str = "/") -> dict[str, object]:
    """The API's OpenAPI document (GET /openapi.json), its `servers` naming `server`."""
    return health.document(server, channel_operations())


def database(settings: Settings, engine: AsyncEngine, instruments: Instruments) -> Database:
    """The process's Database: webhook events queued when a webhook is set, every answer
    counted for Prometheus, anonymous alerts limited as settings say."""
    return Database(session_factory(engine, outbox=settings.outbound_webhook_url is not None,
                                    observe=instruments.recorded,
                                    anonymous_alerts=settings.anonymous_alerts_per_hour))


def build_services(settings: Settings, engine: AsyncEngine, *,
                   clock: Callable[[], datetime] | None = None,
                   channels: Sequence[str] | None = None,
                   instruments: Instruments | None = None,
                   team_chat: TeamChat | None = None,
                   repliers: Mapping[str, Replier] | None = None,
                   on_resolved: OnResolved | None = None,
                   bot_username: str | None = None, db: Database | None = None) -> Services:
    """`channels` overrides the channels sent on (policy_of), for a process that brings
    senders of its own; `team_chat`, the chat alerts and comments go to; `repliers`, by
    channel, how the team's replies reach customers; `on_resolved`, what the team chat
    shows of a resolved alert; `bot_username`, the bot deep links name; `db`, the Database
    of `database()`, if the process made it already."""
    instruments = instruments or Instruments()
    db = db or database(settings, engine, instruments)
    scripts = ScriptCache()
    policy = policy_of(settings)
    if channels is not None:
        policy = replace(policy, channels=channels)
    clock = clock or (lambda: datetime.now(UTC))
    team = TeamAlerts(db, team_chat, clock=clock) if team_chat is not None else None
    return Services(
        db.factory, db, scripts,
        TriggerService(db, policy=policy, clock=clock, scripts=scripts),
        CampaignService(db, policy=policy, clock=clock, scripts=scripts),
        SurveyService(db, clock=clock, team=team, scripts=scripts, windowed=windows()),
        Links(settings.base_url, bot_username),
        AdminService(db, clock=clock),
        AlertService(db, scripts=scripts, clock=clock, repliers=repliers,
                     on_resolved=on_resolved),
        MetricsService(db), ReportService(db), ExportService(db), clock, instruments, team,
        Availability(db), Receipts(db, clock=clock))


def build_web_app(settings: Settings, engine: AsyncEngine, services: Services | None = None
                  ) -> web.Application:
    services = services or build_services(settings, engine)
    # Outages inside the others, so its 503 and 507 get their CORS and page headers; only
    # the checks of credentials, which read and write the limits, the audit log and
    # sessions, inside it (failed attempts first: it judges the secret the others check).
    app = web.Application(middlewares=[effects_after, observability.timed, html.pages, api.errors,
                                       widget.anonymous, outage.outages,
                                       throttle.failed_attempts, api.authenticate,
                                       dashboard.dashboard],
                          client_max_size=api.MAX_BODY,
                          # api.body decodes a body's Content-Encoding, or refuses it.
                          handler_args={"auto_decompress": False})
    app.on_response_prepare.append(html.secure_headers)
    redis = settings.redis_url.get_secret_value() if settings.redis_url else None
    app[throttle.LIMITER] = limiter("anonymous", settings.anonymous_rate, services.db, redis)
    app[throttle.FAILURES] = limiter("failed", settings.failed_attempts, services.db, redis)
    app[throttle.CREDENTIALS] = {**throttle.API_CREDENTIALS,
                                 **{header: check for plugin in CHANNELS
                                    for header, check in plugin.credentials.items()}}
    app[throttle.SECRET_PATHS] = (*throttle.LINKS, *(path for plugin in CHANNELS
                                                     for path in plugin.secret_paths))
    app.on_cleanup.append(throttle.close)
    app[SETTINGS] = settings
    app[AVAILABILITY] = services.availability
    app[CLOCK] = services.clock
    app[TRIGGERS] = services.triggers
    app[CAMPAIGNS] = services.campaigns
    app[SURVEYS] = services.surveys
    app[LINKS] = services.links
    app[ADMIN] = services.admin
    app[ALERTS] = services.alerts
    app[FIGURES] = services.figures
    app[REPORTS] = services.reports
    app[EXPORTS] = services.exports
    app[RECEIPTS] = services.receipts
    app[health.CHANNEL_OPERATIONS] = channel_operations()
    app[SENDERS] = {plugin.spec.name: plugin.attach(app) for plugin in CHANNELS
                    if plugin.attach is not None and plugin.configured(settings)}
    app[observability.INSTRUMENTS] = services.instruments
    # The templates ship with the code: no stat() of each one on every render to see
    # whether it changed (auto_reload), a twentieth of a page's CPU.
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES),
                         autoescape=jinja2.select_autoescape(default=True),
                         trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    # The longer prefix first: a request is matched against static routes in order.
    app.router.add_static("/static/dashboard", DASHBOARD / "static")
    app.router.add_static("/static", WEB / "static")
    for module in (health, triggers, campaigns, pages, widget, answers, customers, surveys,
                   audit, alerts, observability, metrics_api, dashboard, bounces,
                   whatsapp_webhook, sms_twilio, sms_smsc):
        app.add_routes(module.routes)
    app.add_routes(widget.options_routes())
    api.check_scopes(app)
    return app


@web.middleware
async def effects_after(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    """What a request's transactions queued for after their commit (a team alert) is carried
    out when its handling ends (bot.services.effects)."""
    async with carried_out_after():
        return await handler(request)


@dataclass(frozen=True, slots=True)
class Telegram:
    """The process's Telegram side: the bot answering customers and the team, the one the
    dispatcher sends with (its own limits, no retries), and the updates' dispatcher."""

    bot: Bot
    sender: Bot
    updates: Dispatcher
    i18n: I18n


@dataclass(frozen=True, slots=True)
class Product:
    """Everything one process runs, built by `build`."""

    settings: Settings
    engine: AsyncEngine
    services: Services
    web: web.Application
    telegram: Telegram | None
    dispatcher: DeliveryDispatcher | None  # None: no channel to send on
    webhooks: WebhookSender | None
    digest: Digest | None
    smtp: Smtp | None

    @property
    def effects(self) -> list[OutboxRunner]:
        """The outbox's runners, whose ticks retry what was not carried out at once."""
        return [runner for runner in (self.webhooks, self.services.team) if runner is not None]

    async def close(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.close()
        if self.telegram is not None:
            for bot in (self.telegram.bot, self.telegram.sender):
                await bot.session.close()


def build_sender_bot(settings: Settings, db: Database) -> Bot:
    """The dispatcher's own Bot: its messages wait for Telegram's limits (shared by every
    unprompted send in this process, and with REDIS_URL by every process), and its errors
    reach the dispatcher unretried, which reschedules them (a 429 pauses all sending for
    retry_after)."""
    bot = telegram.build_bot(settings, functools.partial(mark_unreachable, db),
                             retry=False)
    shared = (SharedPace(settings.redis_url.get_secret_value(), "telegram",
                         settings.telegram_rate, settings.telegram_chat_rate)
              if settings.redis_url else None)
    bot.session.middleware(RateLimited(Limiter(settings.telegram_rate,
                                               settings.telegram_chat_rate, shared)))
    return bot


async def build(settings: Settings, engine: AsyncEngine | None = None, *,
                clock: Callable[[], datetime] | None = None,
                channels: Sequence[str] | None = None) -> Product:
    """The whole process: services, the web app, the Telegram bot and its updates'
    dispatcher (with BOT_TOKEN), the team chat (with ADMIN_CHAT_ID too), the senders and
    the delivery dispatcher, the outbound webhook and the digest, as settings say."""
    engine = engine or create_engine(settings.database_url)
    instruments = Instruments()
    db = database(settings, engine, instruments)
    smtp = Smtp.from_url(settings.smtp_url.get_secret_value()) if settings.smtp_url else None
    bot = sender = None
    team_chat: TeamChat | None = None
    username = None
    if settings.bot_token is not None:
        bot = telegram.build_bot(settings, functools.partial(mark_unreachable, db))
        sender = build_sender_bot(settings, db)
        # Deep links name the bot: t.me/<username>?start=<token>
        username = (await bot.get_me()).username
        if settings.admin_chat_id is not None:
            team_chat = admin.TelegramTeam(bot, settings.admin_chat_id)
    services = build_services(
        settings, engine, clock=clock, channels=channels, instruments=instruments,
        team_chat=team_chat,
        # The team's replies go where the customer answered: as the bot, or by e-mail.
        repliers={name: replier for name, replier in (
            ("telegram", TelegramReplier(bot) if bot else None),
            ("email", EmailReplier(smtp, settings.mail_from) if smtp else None)) if replier},
        on_resolved=functools.partial(admin.show_resolved, bot, settings) if bot else None,
        bot_username=username, db=db)
    app = build_web_app(settings, engine, services)
    senders: dict[str, Channel] = {}
    tg = None
    if bot is not None and sender is not None:
        i18n = telegram.build_i18n()
        updates = telegram.build_dispatcher(
            settings, i18n, surveys=services.surveys, alerts=services.alerts,
            admin_service=services.admin, reports_service=services.reports,
            exports=services.exports)
        tg = Telegram(bot, sender, updates, i18n)
        senders["telegram"] = TelegramChannel(sender, i18n)
        if settings.webhook_url:
            telegram.add_webhook(app, settings, updates, bot)
    if smtp is not None:
        senders["email"] = EmailChannel(smtp, settings.mail_from, services.links)
    attached: dict[str, Channel] = app[SENDERS]
    senders.update(attached)
    senders = {plugin.spec.name: senders[plugin.spec.name] for plugin in CHANNELS
               if plugin.spec.name in senders}  # in the order a delivery tries them
    dispatcher = DeliveryDispatcher(
        services.db, senders, clock=services.clock, scripts=services.scripts,
        batch=settings.dispatch_batch, attempts=settings.send_attempts,
        backoff=timedelta(seconds=settings.retry_backoff),
        sending_timeout=timedelta(seconds=settings.sending_timeout),
        instruments=instruments, windows=windows(),
        daily={"whatsapp": settings.whatsapp_daily_customers}
        if settings.whatsapp_daily_customers else None) if senders else None
    webhooks = None
    if settings.outbound_webhook_url and settings.outbound_webhook_secret is not None:
        webhooks = WebhookSender(services.db, settings.outbound_webhook_url,
                                 settings.outbound_webhook_secret.get_secret_value().encode(),
                                 instruments=instruments)
    digest = None
    if settings.digest != "off":
        digest = Digest(services.db, cadence=settings.digest, timezone=settings.digest_timezone,
                        bot=bot, chat_id=settings.admin_chat_id, mailer=smtp,
                        mail_from=settings.mail_from, emails=settings.digest_emails)
    return Product(settings, engine, services, app, tg, dispatcher, webhooks, digest, smtp)
