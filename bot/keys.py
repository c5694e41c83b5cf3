"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from bot.links import Links
from bot.services.admin import AdminService
from bot.services.alerts import AlertService
from bot.services.availability import Availability
from bot.services.campaigns import CampaignService
from bot.services.exports import ExportService
from bot.services.metrics import MetricsService
from bot.services.receipts import Receipts
from bot.services.reports import ReportService
from bot.services.surveys import SurveyService
from bot.services.triggers import TriggerService
from bot.settings import Settings

AVAILABILITY = web.AppKey("availability", Availability)
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
SETTINGS = web.AppKey("settings", Settings)
TRIGGERS = web.AppKey("triggers", TriggerService)
CAMPAIGNS = web.AppKey("campaigns", CampaignService)
SURVEYS = web.AppKey("surveys", SurveyService)
LINKS = web.AppKey("links", Links)
ADMIN = web.AppKey("admin", AdminService)
ALERTS = web.AppKey("alerts", AlertService)
FIGURES = web.AppKey("figures", MetricsService)  # the CX metrics (bot.services.metrics)
REPORTS = web.AppKey("reports", ReportService)
EXPORTS = web.AppKey("exports", ExportService)
RECEIPTS = web.AppKey("receipts", Receipts)  # what channels report after a send
