"""Probe (issue 16, part k), over HTTP on SQLite and PostgreSQL: the answers as CSV and as
XLSX run no formula from any string column (external id, segment, choices, step id,
context, comment) and carry no bidi control; the XLSX has the CSV's rows, its texts typed
as text and its numbers as numbers. A comment with a RIGHT-TO-LEFT OVERRIDE is isolated on
the dashboard's pages and in the team chat's messages, and dropped from the files."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from bot.services import exports
from bot.services.safe_text import BIDI_CONTROLS, FORMULA_STARTS
from bot.services.surveys import Outcome, Who
from conversations.engine import Reply
from handlers.telegram import admin
from handlers.telegram import app as telegram
from storage.models import AnswerRow, CustomerRow, DeliveryRow
from testkit.botapi import BotApiStub, close_bot
from tests.e2e.dashboard_support import log_in
from tests.e2e.telegram_support import ADMIN_CHAT
from tests.e2e.trigger_support import ADMIN, Api, serving

PREFIXES = ("=", "+", "-", "@", "\t", "\r")
RLO, FSI, PDI = "\u202e", "\u2068", "\u2069"
# The customer's own PDI first: it would close an isolate around it early if it stayed.
COMMENT = f"{PDI}{RLO}gnp.exe is what you sent me"
XLSX = exports.XLSX_TYPE


@pytest.fixture
async def stub() -> AsyncIterator[BotApiStub]:
    async with BotApiStub() as started:
        yield started


@pytest.fixture
async def api(db_url: str, stub: BotApiStub) -> AsyncIterator[Api]:
    async with serving(db_url, telegram_api_base=stub.base_url,
                       admin_chat_id=ADMIN_CHAT) as api:
        yield api


async def _dialogue(api: Api, n: int, comment: str, **customer: Any) -> list[Outcome]:
    """Customer crm-<n> scores NPS 1 in Telegram and says why; the outcomes, in order."""
    status, accepted = await api.post("/api/v1/triggers", {
        "survey": "nps", "idempotency_key": f"probe-{n}", "channel": "telegram",
        "customer": {"external_id": f"crm-{n}", "telegram_id": 5000 + n, **customer},
        "context": {"shop": f"{RLO}moscow-{n}"}})
    assert (status, accepted["status"]) == (202, "scheduled"), accepted
    async with api.services.factory() as session:
        token = await session.scalar(
            select(DeliveryRow.token).where(DeliveryRow.id == accepted["delivery_id"]))
    assert token is not None
    who = Who("telegram", str(5000 + n))
    surveys = api.services.surveys
    await surveys.begin(who, token=token)
    scored = await surveys.reply(who, Reply.typed("1"))
    why = await surveys.reply(who, Reply.typed(comment))
    assert scored is not None
    assert why is not None
    assert why.finished
    return [scored, why]


async def _hostile(api: Api, n: int, prefix: str) -> None:
    """What the API and the scripts refuse or never make, stored all the same (an older
    version, an import, a direct write): the export must not count on their checks."""
    async with api.services.factory() as session:
        await session.execute(update(CustomerRow).where(
            CustomerRow.external_id == f"crm-{n}").values(external_id=f"{prefix}crm-{n}"))
        customer = await session.scalar(select(CustomerRow.id).where(
            CustomerRow.external_id == f"{prefix}crm-{n}"))
        answers = (await session.scalars(
            select(AnswerRow).where(AnswerRow.customer_id == customer))).all()
        for answer in answers:
            answer.step_id = f"{prefix}{answer.step_id}"
            answer.segment = f"{prefix}vip"
            answer.choices = [f"{prefix}price", "speed"]
            answer.context = {"shop": f"{prefix}shop"}
            if answer.text is not None:
                answer.text = f"{prefix}HYPERLINK(\"http://evil\")"
        await session.commit()


async def _download(api: Api, accept: str) -> bytes:
    response = await api.client.get("/api/v1/answers?survey=nps", headers={
        "Authorization": f"Bearer {ADMIN}", "Accept": accept})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith(accept)
    return await response.read()


def _outside_bdi(html: str) -> str:
    return re.sub(r"<bdi>[^<]*</bdi>", "", html)


async def test_no_export_cell_runs_a_formula_and_the_xlsx_has_the_csvs_rows(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    for n, prefix in enumerate(PREFIXES, 1):
        await _dialogue(api, n, "why not")
        await _hostile(api, n, prefix)
    await _dialogue(api, 9, COMMENT)
    await _dialogue(api, 10, "#N/A")  # openpyxl would store this as an error, not text
    monkeypatch.setattr(exports, "CSV_PAGE", 5)  # 16 answers: four pages of each file

    raw = await _download(api, "text/csv")
    header, *rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert header == list(exports.CSV_COLUMNS)
    assert len(rows) == 16
    column = {name: header.index(name) for name in header}
    for row in rows:
        for value in row:
            assert not value.startswith(FORMULA_STARTS), row
            assert not set(value) & set(BIDI_CONTROLS), row
    for n, prefix in enumerate(PREFIXES, 1):
        mine = [row for row in rows if row[column["customer"]] == f"'{prefix}crm-{n}"]
        assert sorted(row[column["step_id"]] for row in mine) == [
            f"'{prefix}reason", f"'{prefix}score"]
        for row in mine:
            assert row[column["segment"]] == f"'{prefix}vip"
            assert row[column["choices"]] == f"'{prefix}price;speed"
            assert json.loads(row[column["context"]]) == {"shop": f"{prefix}shop"}
        assert [row[column["text"]] for row in mine if row[column["text"]]] == [
            f"'{prefix}HYPERLINK(\"http://evil\")"]
        assert sorted(row[column["score"]] for row in mine) == ["", "1"]
    [bidi] = [row for row in rows if row[column["customer"]] == "crm-9" and row[column["text"]]]
    assert bidi[column["text"]] == "gnp.exe is what you sent me"
    assert json.loads(bidi[column["context"]]) == {"shop": "moscow-9"}

    book = load_workbook(io.BytesIO(await _download(api, XLSX)), read_only=True)
    sheet = book.worksheets[0]
    lines = [list(line) for line in sheet.iter_rows()]
    # XML keeps no bare CR: a CR the CSV has reads as LF in the workbook.
    assert [["" if c.value is None else str(c.value) for c in line] for line in lines] == [
        [value.replace("\r", "\n") for value in row] for row in [header, *rows]]
    for line in lines[1:]:
        for name, c in zip(header, line, strict=True):
            if name in ("id", "script_version", "session_id", "score") and c.value is not None:
                assert (c.data_type, type(c.value)) == ("n", int), (name, c.value)
            elif c.value is not None:
                assert (c.data_type, type(c.value)) == ("s", str), (name, c.value)


async def test_a_right_to_left_override_is_isolated_on_pages_and_in_the_team_chat(
        api: Api, stub: BotApiStub) -> None:
    outcomes = await _dialogue(api, 1, COMMENT, first_name=f"{RLO}Anna")
    bot = telegram.build_bot(api.settings, api.services.surveys.mark_unreachable)
    team = admin.TelegramTeam(bot, ADMIN_CHAT)  # as the team sink carries them out
    try:
        for outcome in outcomes:
            for alert in outcome.alerts:
                await team.alert(alert)
            for comment in outcome.comments:
                await team.comment(comment)
    finally:
        await close_bot(bot)

    alert, comment = [params["text"] for params in stub.sent(ADMIN_CHAT)]
    assert f"Customer: {FSI}{RLO}Anna{PDI} (#" in alert
    assert f"shop{PDI}={FSI}{RLO}moscow-1{PDI}" in alert
    assert comment.endswith(f":\n{FSI}{RLO}gnp.exe is what you sent me{PDI}")
    for text in (alert, comment):  # every override ends inside an isolate
        assert RLO not in re.sub(f"{FSI}[^{FSI}{PDI}]*{PDI}", "", text)

    assert (await log_in(api)).status == 303
    found = admin.ALERT_REF.search(alert)
    assert found is not None
    alert_id = found.group(1)
    for path in ("/admin/surveys/nps", "/admin/alerts", f"/admin/alerts/{alert_id}"):
        response = await api.client.get(path)
        assert response.status == 200, path
        html = await response.text()
        assert RLO in html, path
        assert RLO not in _outside_bdi(html), path
        assert PDI not in html, path
    survey = await (await api.client.get("/admin/surveys/nps")).text()
    assert f"<bdi>{RLO}gnp.exe is what you sent me</bdi>" in survey
