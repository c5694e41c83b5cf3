"""Builds the application's objects once and wires them together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.keys import (
    ADMIN,
    ALERTS,
    CAMPAIGNS,
    CLOCK,
    ENGINE,
    EXPORTS,
    FIGURES,
    LINKS,
    NOTIFY,
    REPORTS,
    SETTINGS,
    SURVEYS,
    TRIGGERS,
)
from bot.links import Links
from bot.observability import Metrics
from bot.ratelimit import limiter
from bot.services.admin import AdminService
from bot.services.alerts import AlertService
from bot.services.campaigns import CampaignService
from bot.services.exports import ExportService
from bot.services.metrics import MetricsService
from bot.services.reports import ReportService
from bot.services.scripts import ScriptCache
from bot.services.surveys import Outcome, SurveyService
from bot.services.triggers import Policy, TriggerService
from bot.settings import Settings
from handlers.web import (
    alerts,
    answers,
    api,
    audit,
    campaigns,
    customers,
    dashboard,
    health,
    outage,
    pages,
    prometheus,
    surveys,
    throttle,
    triggers,
    widget,
)
from handlers.web import metrics as metrics_api
from storage.db import session_factory
from storage.uow import Database

WEB = Path(pages.__file__).parent
TEMPLATES, STATIC = WEB / "templates", WEB / "static"


@dataclass(frozen=True, slots=True)
class Services:
    factory: async_sessionmaker[AsyncSession]
    scripts: ScriptCache
    triggers: TriggerService
    campaigns: CampaignService
    surveys: SurveyService
    links: Links
    admin: AdminService
    alerts: AlertService
    figures: MetricsService  # the CX metrics (Prometheus' are `metrics`)
    reports: ReportService
    exports: ExportService
    clock: Callable[[], datetime]  # "now" for every service: tests move it
    metrics: Metrics = field(default_factory=Metrics)


def policy_of(settings: Settings) -> Policy:
    """The channels this process can send on: Telegram with a bot token, e-mail with an
    SMTP server (a delivery is never scheduled for a channel nobody sends on)."""
    channels = [name for name, configured in (("telegram", settings.bot_token is not None),
                                              ("email", settings.smtp_url is not None))
                if configured]
    return Policy(channels=channels, throttle_days=settings.throttle_days)


def build_services(settings: Settings, engine: AsyncEngine, *,
                   clock: Callable[[], datetime] | None = None,
                   channels: Collection[str] | None = None) -> Services:
    """`channels` overrides the channels sent on (policy_of), for a process that brings
    senders of its own."""
    metrics = Metrics()
    factory = session_factory(engine, outbox=settings.outbound_webhook_url is not None,
                              observe=metrics.recorded,
                              anonymous_alerts=settings.anonymous_alerts_per_hour)
    scripts = ScriptCache()
    policy = policy_of(settings)
    if channels is not None:
        policy = replace(policy, channels=channels)
    clock = clock or (lambda: datetime.now(UTC))
    return Services(factory, scripts,
                    TriggerService(Database(factory), policy=policy, clock=clock,
                                   scripts=scripts),
                    CampaignService(Database(factory), policy=policy, clock=clock,
                                    scripts=scripts),
                    SurveyService(Database(factory), clock=clock), Links(settings.base_url),
                    AdminService(Database(factory), clock=clock),
                    AlertService(Database(factory), scripts=scripts, clock=clock),
                    MetricsService(Database(factory)), ReportService(Database(factory)),
                    ExportService(Database(factory)), clock, metrics)


async def _nobody(outcome: Outcome) -> None:
    """No team chat configured: alerts stay in the database for the dashboard."""


def build_web_app(settings: Settings, engine: AsyncEngine, services: Services | None = None,
                  notify: Callable[[Outcome], Awaitable[None]] | None = None
                  ) -> web.Application:
    services = services or build_services(settings, engine)
    # Outages inside the others, so its 503 and 507 get their CORS and page headers; only
    # the checks of credentials, which read and write the limits, the audit log and
    # sessions, inside it (failed attempts first: it judges the secret the others check).
    app = web.Application(middlewares=[prometheus.timed, pages.pages, api.errors,
                                       widget.anonymous, outage.outages,
                                       throttle.failed_attempts, api.authenticate,
                                       dashboard.dashboard],
                          client_max_size=api.MAX_BODY,
                          # api.body decodes a body's Content-Encoding, or refuses it.
                          handler_args={"auto_decompress": False})
    app.on_response_prepare.append(pages.secure_headers)
    redis = settings.redis_url.get_secret_value() if settings.redis_url else None
    app[throttle.LIMITER] = limiter("anonymous", settings.anonymous_rate, engine, redis)
    app[throttle.FAILURES] = limiter("failed", settings.failed_attempts, engine, redis)
    app.on_cleanup.append(throttle.close)
    app[SETTINGS] = settings
    app[ENGINE] = engine
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
    app[NOTIFY] = notify or _nobody
    app[prometheus.METRICS] = services.metrics
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES),
                         autoescape=jinja2.select_autoescape(default=True),
                         trim_blocks=True, lstrip_blocks=True)
    app.router.add_static("/static", STATIC)
    for module in (health, triggers, campaigns, pages, widget, answers, customers, surveys,
                   audit, alerts, prometheus, metrics_api, dashboard):
        app.add_routes(module.routes)
    app.add_routes(widget.options_routes())
    api.check_scopes(app)
    return app
