"""The team's digest on a moved clock: to the team chat through the Bot API stand-in (text
and a PNG chart) and by e-mail to a real SMTP server (aiosmtpd), with each figure's change
against the period before and the comments of customers who scored low; sent once per
period, run twice or by two processes at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time

import pytest
from aiosmtpd.controller import Controller
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.scheduler import build_scheduler, digest_trigger
from bot.services.campaigns import CampaignService
from bot.services.digest import Digest
from bot.services.surveys import SurveyService, Who
from conversations.engine import Reply
from handlers.email.channel import Smtp
from storage.db import create_engine, session_factory
from storage.models import AuditRow
from storage.uow import Database
from testkit.botapi import BotApiStub
from testkit.clock import Clock
from testkit.net import free_port
from testkit.smtp import Mailbox
from tests.e2e.telegram_support import ADMIN_CHAT, Product, running
from tests.e2e.test_admin_commands import PNG, answer

TEAM = ["team@example.com", "lead@example.com"]
# Digest time on Tuesday 10 March: the digest covers Monday 9 March.
NINE = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
async def api() -> AsyncIterator[BotApiStub]:
    async with BotApiStub() as stub:
        yield stub


@pytest.fixture
async def product(db_url: str, api: BotApiStub) -> AsyncIterator[Product]:
    async with running(db_url, api) as started:
        yield started


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


def digest(product: Product, port: int, clock: Clock,
           factory: async_sessionmaker[AsyncSession] | None = None) -> Digest:
    return Digest(Database(factory or product.factory), cadence="daily", timezone="UTC",
                  bot=product.bot, chat_id=ADMIN_CHAT,
                  mailer=Smtp("127.0.0.1", port, None, None, False),
                  mail_from="Otklik <otklik@example.com>", emails=TEAM, clock=clock, timeout=5)


async def seed(product: Product) -> None:
    # Sunday: NPS +100; Monday: one promoter, one detractor, NPS 0.
    await answer(product, "10", at=datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    await answer(product, "9", "Old news", at=datetime(2026, 3, 8, 13, 0, tzinfo=UTC))
    await answer(product, "2", "Delivery took three weeks",
                 at=datetime(2026, 3, 9, 10, 0, tzinfo=UTC))
    await answer(product, "10", "Lovely people", at=datetime(2026, 3, 9, 11, 0, tzinfo=UTC))
    await answer(product, "1", "Next day's complaint", at=datetime(2026, 3, 10, 8, 0,
                                                                  tzinfo=UTC))


async def sent_audit(product: Product) -> list[str]:
    async with product.factory() as session:
        return list(await session.scalars(
            select(AuditRow.target).where(AuditRow.action == "digest.sent")
            .order_by(AuditRow.id)))


async def test_the_digest_goes_once_to_the_chat_and_by_email(
        product: Product, api: BotApiStub, mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    await seed(product)
    clock = Clock(NINE)
    job = digest(product, port, clock)

    assert await job.run() is True

    [text] = [params["text"] for params in api.sent(ADMIN_CHAT)]
    assert text.startswith("Otklik digest, 2026-03-09..2026-03-09")
    section = text.split("Net Promoter Score (nps)\n", 1)[1].split("\n\n", 1)[0]
    assert section.splitlines() == [
        "NPS +0.0 (too few answers for a margin) (promoters 1 / passives 0 / detractors 1, "
        "n=2); change -100.0",
        "Response rate — (no surveys sent)",
        "Comments from low scores:",
        "  • \u2068Delivery took three weeks\u2069",  # isolated: the customer's words
        "Open alerts: 2"]
    assert "Lovely people" not in text
    assert "Next day's complaint" not in text
    [(params, photo)] = api.uploads(ADMIN_CHAT, "sendPhoto")
    assert photo.content.startswith(PNG)
    assert params["caption"] == "Net Promoter Score, 2026-03-09..2026-03-09"

    [mail] = box.messages
    assert sorted(box.recipients) == sorted(TEAM)
    assert mail["Subject"] == "Otklik digest, 2026-03-09..2026-03-09"
    body = mail.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").rstrip("\n") == text
    [chart] = [part for part in mail.iter_attachments()]
    assert chart.get_content_type() == "image/png"
    assert chart.get_content() == photo.content

    # Again, later the same day (a restart within the misfire grace): nothing more.
    clock.advance(minutes=30)
    assert await job.run() is False
    assert len(api.sent(ADMIN_CHAT)) == 1
    assert len(box.messages) == 1
    assert await sent_audit(product) == ["daily:2026-03-09"]

    # The next day's digest is a new one: the detractor of the 10th, the change against
    # the 9th.
    clock.advance(days=1)
    assert await job.run() is True
    latest = api.sent(ADMIN_CHAT)[-1]["text"]
    assert "NPS -100.0" in latest
    assert "(promoters 0 / passives 0 / detractors 1, n=1); change -100.0" in latest
    assert "  • \u2068Next day's complaint\u2069" in latest
    assert len(box.messages) == 2


async def test_two_processes_send_one_digest(
        product: Product, api: BotApiStub, mailbox: tuple[Mailbox, int], db_url: str) -> None:
    box, port = mailbox
    await seed(product)
    other_engine = create_engine(db_url)
    try:
        first = digest(product, port, Clock(NINE))
        second = digest(product, port, Clock(NINE), session_factory(other_engine))
        sent = await asyncio.gather(first.run(), second.run(), first.run(), second.run())
    finally:
        await other_engine.dispose()
    assert sorted(sent) == [False, False, False, True]
    assert len(api.sent(ADMIN_CHAT)) == 1
    assert len(api.uploads(ADMIN_CHAT, "sendPhoto")) == 1
    assert len(box.messages) == 1
    assert await sent_audit(product) == ["daily:2026-03-09"]


async def test_the_scheduler_runs_the_digest_at_its_time(product: Product) -> None:
    async def job() -> None: ...

    scheduler = build_scheduler(None, CampaignService(Database(product.factory)),
                                Database(product.factory),
                                digest=(digest_trigger("weekly", time(9, 0), "Europe/Moscow"),
                                        job))
    found = scheduler.get_job("digest")
    assert found is not None
    assert isinstance(found.trigger, CronTrigger)
    assert str(found.trigger.timezone) == "Europe/Moscow"
    assert found.trigger.get_next_fire_time(None, NINE) == datetime(
        2026, 3, 16, 6, 0, tzinfo=UTC)
    assert build_scheduler(None, CampaignService(Database(product.factory)),
                           Database(product.factory)).get_job("digest") is None


async def test_a_digest_with_nowhere_to_go_claims_nothing(product: Product) -> None:
    nowhere = Digest(Database(product.factory), cadence="daily", timezone="UTC", bot=product.bot,
                     chat_id=None, emails=TEAM, clock=Clock(NINE))  # no SMTP_URL
    assert await nowhere.run() is False
    assert await sent_audit(product) == []


async def test_anonymous_answers_are_counted_beside_the_known_figures(
        product: Product, api: BotApiStub, mailbox: tuple[Mailbox, int]) -> None:
    _, port = mailbox
    await seed(product)
    monday = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)
    visitors = SurveyService(Database(product.factory), clock=lambda: monday)
    for n, score in enumerate(("3", "0")):
        visitor = Who("web", f"visitor-digest-{n}")
        await visitors.begin(visitor, "nps")
        await visitors.reply(visitor, Reply.typed(score))
        await visitors.reply(visitor, Reply.typed(f"Anonymous gripe {n}"))

    assert await digest(product, port, Clock(NINE)).run() is True

    [text] = [params["text"] for params in api.sent(ADMIN_CHAT)]
    section = text.split("Net Promoter Score (nps)\n", 1)[1].split("\n\n", 1)[0]
    lines = section.splitlines()
    # The known customers' figures as without the visitors, their answers counted beside.
    assert lines[0].startswith("NPS +0.0 ")
    assert "(promoters 1 / passives 0 / detractors 1, n=2); change -100.0" in lines[0]
    assert lines[1] == "+ 2 anonymous answers (/w/, the widget), not in these figures"
    assert "Anonymous gripe" not in text
