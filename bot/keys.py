"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services.campaigns import CampaignService
from bot.services.triggers import TriggerService
from bot.settings import Settings

ENGINE = web.AppKey("engine", AsyncEngine)
SETTINGS = web.AppKey("settings", Settings)
TRIGGERS = web.AppKey("triggers", TriggerService)
CAMPAIGNS = web.AppKey("campaigns", CampaignService)
