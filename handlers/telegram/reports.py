"""The team's commands: /report, /alerts and /export, for an admin (a user in
ADMIN_USER_IDS, in any chat with the bot, or anyone writing in ADMIN_CHAT_ID). Anyone else
sending them gets the customer's /help: nothing tells a customer these commands exist.

Figures come from the rollups (MetricsService.compute), never from raw answers."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import BufferedInputFile, FSInputFile, Message

from bot.services.admin import AdminService
from bot.services.alerts import AlertService, AlertView
from bot.services.digest import chart
from bot.services.exports import AnswerFilters, ExportService, export_filename
from bot.services.report_text import PERIODS_HELP, BadPeriod, Period, parse_period, report_text
from bot.services.reports import ReportService, Survey
from bot.services.safe_text import isolate
from bot.settings import Settings
from handlers.errors import HandlerError
from handlers.telegram import customer
from handlers.telegram.filters import Check

DEFAULT_PERIOD = "90d"
ALERTS_SHOWN = 20
# Telegram takes a bot's document up to 50 MB; the rest of the request needs some room.
EXPORT_LIMIT = 45 * 2**20
COMMANDS = ("report", "alerts", "export")


class Admin(Filter):
    """A user in ADMIN_USER_IDS, wherever they write, or anyone in the team chat."""

    async def __call__(self, message: Message, settings: Settings) -> bool:
        user = message.from_user
        return ((user is not None and user.id in settings.admin_user_ids)
                or (settings.admin_chat_id is not None
                    and message.chat.id == settings.admin_chat_id))


class Asked(HandlerError):
    """What the admin typed cannot be answered; the message says what is accepted."""


async def _asked(reports: ReportService, settings: Settings, command: CommandObject,
                 name: str) -> tuple[Survey, Period]:
    """`/name [survey] [period]`: a lone argument that reads as a period is the period."""
    args = (command.args or "").split()
    usage = (f"Usage: /{name} [survey] [period]; the survey defaults to "
             f"{settings.default_survey}, the period to {DEFAULT_PERIOD}; periods: "
             f"{PERIODS_HELP}.")
    if len(args) > 2:
        raise Asked(usage)
    survey_id, period_text = settings.default_survey, DEFAULT_PERIOD
    if len(args) == 2:
        survey_id, period_text = args
    elif len(args) == 1:
        try:
            parse_period(args[0], date.today())
            period_text = args[0]
        except BadPeriod:
            survey_id = args[0]
    found = await reports.survey(survey_id)
    if found is None:
        known = ", ".join(sorted(s.id for s in await reports.active()))
        raise Asked(f"Unknown survey {survey_id!r}; surveys: {known or 'none'}. {usage}")
    today = datetime.now(ZoneInfo(found.timezone)).date()
    try:
        return found, parse_period(period_text, today)
    except BadPeriod as error:
        raise Asked(f"{error}. {usage}") from None


async def on_report(message: Message, command: CommandObject, settings: Settings,
                    reports: ReportService) -> None:
    try:
        asked, period = await _asked(reports, settings, command, "report")
    except Asked as error:
        await message.answer(escape(str(error), quote=False))
        return
    result = await reports.weekly(asked.id, period)
    await message.answer(report_text(asked.title, result, asked.metrics))
    image = await chart(f"{asked.title}, {period}", result, asked.metrics)
    if image is not None:
        await message.answer_photo(BufferedInputFile(image, f"report-{asked.id}.png"),
                                   caption=escape(f"{asked.title}, {period}, by week"))


def _age(since: datetime, now: datetime) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} d"


def alert_line(alert: AlertView, now: datetime) -> str:
    created = alert.created_at if alert.created_at.tzinfo else alert.created_at.replace(
        tzinfo=UTC)
    score = f"{(alert.metric or 'score').upper()} {alert.score}"
    overdue = " · ⏰ overdue" if alert.overdue_at is not None else ""
    return (f"#{alert.id} · {escape(alert.survey_id)} · {escape(score)} · "
            f"{escape(isolate(alert.first_name or '—'))} · {_age(created, now)} · "
            f"owner {escape(alert.owner or '—')}{overdue}")


async def on_alerts(message: Message, alerts: AlertService) -> None:
    found = [alert for status in ("open", "in_progress")
             for alert in await alerts.queue(status=status, limit=ALERTS_SHOWN)]
    found = sorted(found, key=lambda alert: alert.id, reverse=True)[:ALERTS_SHOWN]
    if not found:
        await message.answer("No open alerts.")
        return
    now = datetime.now(UTC)
    await message.answer("\n".join([f"<b>Open alerts</b> (newest first, up to {ALERTS_SHOWN}):",
                                    *(alert_line(alert, now) for alert in found)]))


async def on_export(message: Message, command: CommandObject, settings: Settings,
                    reports: ReportService, exports: ExportService,
                    admin: AdminService) -> None:
    try:
        asked, period = await _asked(reports, settings, command, "export")
    except Asked as error:
        await message.answer(escape(str(error), quote=False))
        return
    zone = ZoneInfo(asked.timezone)
    filters = AnswerFilters(
        survey=asked.id, start=datetime.combine(period.start, datetime.min.time(), zone),
        end=datetime.combine(period.end + timedelta(days=1), datetime.min.time(), zone))
    now = datetime.now(UTC)
    size, cut = 0, False
    # On disk, not in memory: an export may be tens of megabytes.
    with tempfile.TemporaryDirectory(prefix="otklik-export-") as folder:
        path = Path(folder) / export_filename(filters, now.astimezone(zone).date(), "csv")
        with path.open("wb") as out:
            chunks = exports.csv(filters)
            async for chunk in chunks:  # a chunk ends on a row: cutting between keeps CSV
                if size + len(chunk) > EXPORT_LIMIT:
                    cut = True
                    await chunks.aclose()  # type: ignore[attr-defined]
                    break
                out.write(chunk)
                size += len(chunk)
        user = message.from_user.id if message.from_user else message.chat.id
        await admin.audit(f"telegram:{user}", "answers.exported", f"survey:{asked.id}",
                          {"period": str(period), "bytes": size, "cut": cut,
                           "via": "telegram"})
        note = (f" Cut at {EXPORT_LIMIT // 2**20} MB (Telegram's limit for a bot): the "
                f"newest answers are in it; narrow the period for the rest." if cut else "")
        await message.answer_document(
            FSInputFile(path, filename=path.name),
            caption=escape(f"Answers of {asked.id}, {period}.{note}"))


def build_router() -> Router:
    """Admins' commands; the same commands from a customer's private chat get /help."""
    router = Router(name="reports")
    router.message.register(on_report, Admin(), Command("report"))
    router.message.register(on_alerts, Admin(), Command("alerts"))
    router.message.register(on_export, Admin(), Command("export"))
    router.message.register(customer.on_help, Check(F.chat.type == "private"),
                            Command(*COMMANDS))
    return router
