"""Builds the application's objects once and wires them together."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.keys import ENGINE, SETTINGS
from bot.settings import Settings
from handlers.web import health


def build_web_app(settings: Settings, engine: AsyncEngine) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app.add_routes(health.routes)
    return app
