"""/report, /alerts and /export end to end: real updates through the real aiogram
Dispatcher, the Bot API stand-in on loopback (uploads included), the real database (SQLite
and PostgreSQL). An admin gets the figures compute gives and a PNG chart; a customer
sending the same commands gets /help and nothing else."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.services.metrics import MetricsQuery, MetricsService
from bot.services.report_text import report_text
from bot.services.scripts import script_of
from conversations.engine import Reply, advance, start
from handlers.telegram import reports
from storage.models import AuditRow
from storage.uow import Database, Store
from testkit.botapi import BotApiStub
from tests.e2e.telegram_support import ADMIN_CHAT, Product, running
from tests.integration.storage.support import record

ADMIN = 777
CUSTOMER = 555
PNG = b"\x89PNG\r\n\x1a\n"
BOM = b"\xef\xbb\xbf"


@pytest.fixture
async def api() -> AsyncIterator[BotApiStub]:
    async with BotApiStub() as stub:
        yield stub


@pytest.fixture
async def product(db_url: str, api: BotApiStub) -> AsyncIterator[Product]:
    async with running(db_url, api, admin_user_ids=[ADMIN], default_survey="nps") as started:
        yield started


async def answer(product: Product, score: str, reason: str | None = None, *,
                 at: datetime | None = None) -> None:
    """A customer answers the example NPS survey (and its "why?")."""
    now = at or datetime.now(UTC) - timedelta(minutes=5)
    def run(store: Store) -> None:
        row = store.scripts.latest("nps")
        assert row is not None
        script = script_of(row)
        customer = store.customers.add(now=now, first_name="Vera")
        turn = start(script, now=now)
        dialogue = store.dialogues.start(customer.id, "telegram", "nps", script.version,
                                         turn.state.to_json(), now=now)
        turn = advance(script, turn.state, Reply.typed(score), now)
        record(store, dialogue, turn, now, script.timezone)
        if reason is not None:
            turn = advance(script, turn.state, Reply.typed(reason), now)
            record(store, dialogue, turn, now, script.timezone)

    await Database(product.factory).write(run)


def texts(api: BotApiStub, chat: int) -> list[str]:
    return [params["text"] for params in api.sent(chat)]


async def test_report_gives_an_admin_computes_figures_and_a_png(
        product: Product, api: BotApiStub) -> None:
    await answer(product, "10")
    await answer(product, "9")
    await answer(product, "2", "Too slow")

    await product.send(ADMIN, "/report")

    today = datetime.now(UTC).date()
    expected = await MetricsService(Database(product.factory)).compute(MetricsQuery(
        survey="nps", start=today - timedelta(days=89), end=today, group_by="week"))
    assert expected.overall.nps.score == pytest.approx(100 / 3)
    text = texts(api, ADMIN)[-1]
    assert text == report_text("Net Promoter Score", expected, {"nps"})
    assert "NPS +33.3" in text
    assert "(promoters 2 / passives 0 / detractors 1, n=3)" in text
    assert "Answers: 3" in text
    assert "CSAT" not in text
    [(params, photo)] = api.uploads(ADMIN, "sendPhoto")
    assert photo.content.startswith(PNG)
    assert "Net Promoter Score" in params["caption"]

    # The survey and the period as asked; a lone period keeps the default survey.
    await product.send(ADMIN, "/report nps 2020-01-01..2020-12-31")
    assert "2020-01-01..2020-12-31" in texts(api, ADMIN)[-1]
    assert "Answers: 0" in texts(api, ADMIN)[-1]
    assert len(api.uploads(ADMIN, "sendPhoto")) == 1  # nothing to draw
    await product.send(ADMIN, "/report 7d")
    assert f"(nps), {today - timedelta(days=6)}..{today}" in texts(api, ADMIN)[-1]
    await product.send(ADMIN, "/report post_call_csat quarter")
    moscow = datetime.now(ZoneInfo("Europe/Moscow")).date()  # the survey's days
    quarter = date(moscow.year, 3 * ((moscow.month - 1) // 3) + 1, 1)
    assert f"(post_call_csat), {quarter}..{moscow}" in texts(api, ADMIN)[-1]
    assert "CSAT — satisfied" in texts(api, ADMIN)[-1]


async def test_a_customer_sending_the_commands_gets_help(
        product: Product, api: BotApiStub) -> None:
    await answer(product, "2", "Too slow")
    await product.send(CUSTOMER, "/help")
    help_text = texts(api, CUSTOMER)[-1]

    for command in ("/report", "/report nps 30d", "/alerts", "/export nps"):
        await product.send(CUSTOMER, command)
        assert texts(api, CUSTOMER)[-1] == help_text
    assert api.uploads(CUSTOMER, "sendPhoto") == []
    assert api.uploads(CUSTOMER, "sendDocument") == []
    assert not any("NPS" in text or "alert" in text.lower() for text in texts(api, CUSTOMER))
    assert await product.answers() == [("score", 2, None, None),
                                       ("reason", None, None, "Too slow")]  # no "/report"


async def test_bad_survey_and_period_say_what_is_accepted(
        product: Product, api: BotApiStub) -> None:
    await product.send(ADMIN, "/report nosuch")
    assert texts(api, ADMIN)[-1].startswith("Unknown survey 'nosuch'; surveys: ces_support, "
                                            "cli_quarterly, nps, post_call_csat.")
    await product.send(ADMIN, "/report nps 5d")
    assert texts(api, ADMIN)[-1].startswith("'5d' is not a period; periods: 7d, 30d, 90d, "
                                            "quarter (this quarter), year (this year) or "
                                            "YYYY-MM-DD..YYYY-MM-DD.")
    await product.send(ADMIN, "/report nps 2026-02-30..2026-03-01")
    assert "is not two real dates" in texts(api, ADMIN)[-1]
    await product.send(ADMIN, "/export nps 30d extra")
    assert texts(api, ADMIN)[-1].startswith("Usage: /export [survey] [period]")
    assert api.uploads(ADMIN, "sendPhoto") == api.uploads(ADMIN, "sendDocument") == []


async def test_alerts_in_the_team_chat_lists_the_open_ones(
        product: Product, api: BotApiStub) -> None:
    await product.send(ADMIN_CHAT, "/alerts")  # anyone in the team chat is an admin
    assert texts(api, ADMIN_CHAT)[-1] == "No open alerts."

    await answer(product, "3", at=datetime.now(UTC) - timedelta(hours=2, minutes=10))
    await answer(product, "10")
    await answer(product, "1")
    await product.send(ADMIN_CHAT, "/alerts")

    lines = texts(api, ADMIN_CHAT)[-1].splitlines()
    assert lines[0] == "<b>Open alerts</b> (newest first, up to 20):"
    assert lines[1].startswith("#2 · nps · NPS 1 · \u2068Vera\u2069 · ")
    assert lines[1].endswith(" · owner —")
    assert lines[2].startswith("#1 · nps · NPS 3 · \u2068Vera\u2069 · 2 h 1")
    assert len(lines) == 3


async def test_export_sends_the_answers_as_csv_and_is_audited(
        product: Product, api: BotApiStub, monkeypatch: pytest.MonkeyPatch) -> None:
    await answer(product, "10", "Отлично")
    await answer(product, "2", "=HYPERLINK(1)")
    await answer(product, "8", at=datetime.now(UTC) - timedelta(days=40))

    await product.send(ADMIN, "/export nps 30d")

    [(params, document)] = api.uploads(ADMIN, "sendDocument")
    today = datetime.now(UTC).date()
    assert document.filename == f"answers-nps-{today}.csv"
    assert document.content.startswith(BOM)
    rows = list(csv.DictReader(io.StringIO(document.content.decode("utf-8-sig"))))
    assert sorted((row["step_id"], row["score"], row["text"]) for row in rows) == [
        ("reason", "", "'=HYPERLINK(1)"), ("reason", "", "Отлично"),
        ("score", "10", ""), ("score", "2", "")]
    assert "Cut at" not in params["caption"]
    async with product.factory() as session:
        audit = (await session.scalars(
            select(AuditRow).where(AuditRow.action == "answers.exported"))).all()
    assert [(row.actor, row.target, row.details["bytes"], row.details["cut"])
            for row in audit] == [(f"telegram:{ADMIN}", "survey:nps", len(document.content),
                                   False)]

    # Past the cap the export stops at a row and says so.
    monkeypatch.setattr(reports, "EXPORT_LIMIT", len(document.content) - 1)
    await product.send(ADMIN, "/export nps 90d")
    params, cut = api.uploads(ADMIN, "sendDocument")[-1]
    assert cut.content.startswith(BOM)
    assert cut.content.decode("utf-8-sig").splitlines()[0].startswith("id,answered_at,")
    assert len(cut.content) <= len(document.content) - 1
    assert "Cut at" in params["caption"]
