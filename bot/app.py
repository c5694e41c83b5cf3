"""Builds the application's objects once and wires them together."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.keys import CAMPAIGNS, ENGINE, SETTINGS, TRIGGERS
from bot.services.campaigns import CampaignService
from bot.services.scripts import ScriptCache
from bot.services.triggers import Policy, TriggerService
from bot.settings import Settings
from handlers.web import api, campaigns, health, triggers
from storage.db import session_factory

# Request bodies larger than this are refused with 413 (a trigger is a few hundred bytes).
MAX_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class Services:
    factory: async_sessionmaker[AsyncSession]
    scripts: ScriptCache
    triggers: TriggerService
    campaigns: CampaignService


def policy_of(settings: Settings) -> Policy:
    """The channels this process can send on: Telegram with a bot token. (E-mail joins when
    its sender does: a delivery must not be scheduled for a channel nobody sends on.)"""
    channels = ["telegram"] if settings.bot_token is not None else []
    return Policy(channels=channels, throttle_days=settings.throttle_days)


def build_services(settings: Settings, engine: AsyncEngine, *,
                   clock: Callable[[], datetime] | None = None,
                   channels: Collection[str] | None = None) -> Services:
    """`channels` overrides the channels sent on (policy_of), for a process that brings
    senders of its own."""
    factory = session_factory(engine)
    scripts = ScriptCache()
    policy = policy_of(settings)
    if channels is not None:
        policy = replace(policy, channels=channels)
    clock = clock or (lambda: datetime.now(UTC))
    return Services(factory, scripts,
                    TriggerService(factory, policy=policy, clock=clock, scripts=scripts),
                    CampaignService(factory, policy=policy, clock=clock, scripts=scripts))


def build_web_app(settings: Settings, engine: AsyncEngine,
                  services: Services | None = None) -> web.Application:
    services = services or build_services(settings, engine)
    app = web.Application(middlewares=[api.errors], client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[TRIGGERS] = services.triggers
    app[CAMPAIGNS] = services.campaigns
    app.add_routes(health.routes)
    app.add_routes(triggers.routes)
    app.add_routes(campaigns.routes)
    return app
