"""The team's digest (DIGEST=daily|weekly): for each active survey, the period's figures
with the change against the period before, the response rate, new comments from customers
who scored low, and the open alerts; to the team chat (text and charts) and by e-mail.

Sent at most once per period, whatever the number of processes and restarts: the period is
claimed (channel_events, primary key ("digest", key)) and recorded in the audit log in one
transaction before anything is sent; a process that finds either sends nothing. A digest
whose sending fails is logged, not tried again (never twice beats maybe twice)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from typing import Protocol
from zoneinfo import ZoneInfo

import aiosmtplib
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BufferedInputFile

from bot.services.metrics import MetricsQuery, MetricsResult, MetricsService
from bot.services.report_text import (
    Period,
    change,
    figure_lines,
    headline,
    response_text,
)
from bot.services.reports import ReportService, Survey, anonymous_lines
from bot.services.safe_text import isolate
from bot.services.trend_png import trend_png
from storage.uow import Database, Store

log = logging.getLogger(__name__)
COMMENTS = 5  # per survey: the digest points at the dashboard, it does not replace it
COMMENT_CHARS = 300


class Mailer(Protocol):
    """What sends the digest by e-mail (handlers.email.channel.Smtp): its errors are
    aiosmtplib's or OSError."""

    async def send(self, message: EmailMessage, *, seconds: float) -> None: ...


async def chart(title: str, result: MetricsResult, metrics: set[str]) -> bytes | None:
    """trend_png in a worker thread: matplotlib would hold the event loop for ~100 ms."""
    return await asyncio.to_thread(trend_png, title, result.groups, metrics)


def _utc(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Section:
    survey: Survey
    lines: list[str]  # plain text
    chart: bytes | None


@dataclass(frozen=True, slots=True)
class Built:
    key: str
    period: Period
    sections: list[Section]

    def text(self) -> str:
        head = f"Otklik digest, {self.period}"
        body = [f"\n{section.survey.title} ({section.survey.id})\n" + "\n".join(section.lines)
                for section in self.sections] or ["\nNo active surveys."]
        return head + "\n" + "\n".join(body)


def period_for(cadence: str, now: datetime, zone: ZoneInfo) -> Period:
    """The period a digest sent at `now` covers: yesterday (daily) or last Monday to
    Sunday (weekly), in the digest's time zone."""
    today = now.astimezone(zone).date()
    if cadence == "weekly":
        monday = today - timedelta(days=today.weekday())
        return Period(monday - timedelta(days=7), monday - timedelta(days=1))
    return Period(today - timedelta(days=1), today - timedelta(days=1))


class Digest:
    def __init__(self, db: Database, *, cadence: str, timezone: str,
                 bot: Bot | None = None, chat_id: int | None = None,
                 mailer: Mailer | None = None, mail_from: str = "",
                 emails: list[str] | None = None,
                 clock: Callable[[], datetime] | None = None, timeout: float = 60) -> None:
        self._db = db
        self._metrics = MetricsService(db)
        self._reports = ReportService(db)
        self._cadence = cadence
        self._zone = ZoneInfo(timezone)
        self._bot = bot
        self._chat_id = chat_id
        self._mailer = mailer
        self._mail_from = mail_from
        self._emails = emails or []
        self._clock = clock or (lambda: datetime.now(UTC))
        self._timeout = timeout

    async def build(self, period: Period) -> Built:
        since, until = _utc(period.start, self._zone), _utc(period.end + timedelta(1), self._zone)
        sections = []
        for each in await self._reports.active():
            now = await self._reports.weekly(each.id, period)
            before = await self._metrics.compute(MetricsQuery(
                survey=each.id, start=period.previous().start, end=period.previous().end))
            lines = []
            for metric, line in zip(sorted(each.metrics, key=_order),
                                    figure_lines(now.overall, each.metrics), strict=True):
                moved = change(headline(now.overall, metric), headline(before.overall, metric))
                lines.append(f"{line}; change {moved}")
            lines += anonymous_lines(now.response_rate.anonymous_answers)
            lines.append(response_text(now.response_rate))
            comments, alerts = await self._db.read(
                functools.partial(_attention, each.id, since, until))
            if comments:
                lines.append("Comments from low scores:")
                lines += [f"  • {isolate(_short(comment))}" for comment in comments]
            lines.append(f"Open alerts: {alerts}")
            image = await chart(f"{each.title}, {period}", now, each.metrics)
            sections.append(Section(each, lines, image))
        return Built(f"{self._cadence}:{period.start.isoformat()}", period, sections)

    async def claim(self, key: str, now: datetime) -> bool:
        """True for the one process that sends the digest `key`."""
        def claim(store: Store) -> bool:
            if store.audit.page(action="digest.sent", target=key, limit=1):
                return False
            if not store.events.claim("digest", key, now):
                return False
            store.audit.add("digest", "digest.sent", key,
                            {"chat": self._chat_id is not None, "emails": len(self._emails)},
                            now=now)
            return True

        return await self._db.write(claim)

    async def run(self) -> bool:
        """The scheduler's job: the digest of the period just ended, unless sent already.
        True when this call sent it."""
        if (self._bot is None or self._chat_id is None) and (
                self._mailer is None or not self._emails):
            return False  # nowhere to send it: nothing is claimed either
        now = self._clock()
        period = period_for(self._cadence, now, self._zone)
        key = f"{self._cadence}:{period.start.isoformat()}"
        if not await self.claim(key, now):
            log.info("digest %s: sent already", key)
            return False
        built = await self.build(period)
        await self._to_chat(built)
        await self._by_email(built)
        log.info("digest %s sent", key)
        return True

    async def _to_chat(self, built: Built) -> None:
        if self._bot is None or self._chat_id is None:
            return
        try:
            # Plain text: comments are the customers' words, cut anywhere to fit.
            await self._bot.send_message(self._chat_id, _fit(built.text()), parse_mode=None)
            for section in built.sections:
                if section.chart is not None:
                    await self._bot.send_photo(
                        self._chat_id, BufferedInputFile(section.chart, f"{section.survey.id}.png"),
                        caption=f"{section.survey.title}, {built.period}", parse_mode=None)
        except TelegramAPIError as error:
            log.warning("digest %s: not sent to the team chat: %s", built.key,
                        type(error).__name__)

    async def _by_email(self, built: Built) -> None:
        if self._mailer is None or not self._emails:
            return
        message = EmailMessage()
        message["From"] = self._mail_from
        message["To"] = ", ".join(self._emails)
        message["Subject"] = f"Otklik digest, {built.period}"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(built.text())
        for section in built.sections:
            if section.chart is not None:
                message.add_attachment(section.chart, maintype="image", subtype="png",
                                       filename=f"{section.survey.id}-{built.period.start}.png")
        try:
            await self._mailer.send(message, seconds=self._timeout)
        except (aiosmtplib.SMTPException, OSError) as error:
            log.warning("digest %s: not e-mailed: %s", built.key, type(error).__name__)


def _attention(survey_id: str, since: datetime, until: datetime, store: Store
               ) -> tuple[list[str], int]:
    """The comments of [since, until) in dialogues whose score raised an alert, newest
    first, and the survey's open alerts."""
    return (store.answers.low_score_comments(survey_id, since, until, COMMENTS),
            store.metrics.open_alerts(survey_id))


def _order(metric: str) -> int:
    return ("nps", "csat", "ces", "cli").index(metric)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= COMMENT_CHARS else text[:COMMENT_CHARS - 1] + "…"


def _fit(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
