"""The figures a CX manager reads, through GET /api/v1/metrics, otklik report and Prometheus'
/metrics, on SQLite and PostgreSQL: the response rate is of the surveys sent in the period,
with anonymous answers beside it and never in it; a dialogue starts at its first answer and
one opened but never answered is not a stop at its first question; the NPS margin needs
30 answers and never passes 100; a multiple choice of two options is one answer."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.services.surveys import Who
from conversations.engine import Reply
from storage.models import DeliveryRow
from tests.e2e.dashboard_support import log_in
from tests.e2e.test_cli import otklik
from tests.e2e.test_dispatch import world
from tests.e2e.test_observability import samples, value
from tests.e2e.trigger_support import Api, serving, trigger

JSON = dict[str, Any]
DAY = date(2026, 3, 2)  # the day of trigger_support.NOON


async def metrics(api: Api, query: str = "") -> JSON:
    status, body = await api.get(f"/api/v1/metrics?survey=nps{query}")
    assert status == 200, body
    return body


async def visitors(api: Api, scores: list[int], first: int = 0) -> None:
    """Anonymous visitors of /w/nps each give a score (and leave the "why?" unanswered)."""
    for n, score in enumerate(scores, start=first):
        visitor = Who("web", f"visitor-{n}")
        await api.services.surveys.begin(visitor, "nps")
        assert await api.services.surveys.reply(visitor, Reply.typed(str(score)))


async def send_nps(api: Api, chats: range) -> None:
    """A survey sent now to each Telegram chat, through the trigger API."""
    for chat in chats:
        status, accepted = await api.post("/api/v1/triggers", {
            "survey": "nps", "idempotency_key": f"nps-{chat}", "channel": "telegram",
            "delay": "PT0S", "customer": {"external_id": f"crm-{chat}", "telegram_id": chat}})
        assert status == 202, accepted


async def test_anonymous_answers_stand_beside_a_rate_of_no_surveys_sent(db_url: str) -> None:
    async with serving(db_url) as api:
        await visitors(api, [10, 9, 9, 3, 7])
        body = await metrics(api)
        assert body["response_rate"] == {"of": 0, "count": 0, "percent": None,
                                         "anonymous_answers": 5}
        assert body["overall"]["nps"]["total"] == 0  # known customers' figures
        anonymous = await metrics(api, "&respondent=anonymous")
        assert anonymous["overall"]["nps"]["total"] == 5


async def test_the_response_rate_is_of_the_surveys_sent_in_the_period(db_url: str) -> None:
    async with world(db_url, mail=True) as w:
        await send_nps(w.api, range(5001, 5011))
        assert await w.dispatcher.tick() == 10
        for chat in range(5001, 5005):  # four answer: a score, then the "why?"
            await w.customer.tap(chat, "9")
            await w.customer.send(chat, "Fast and friendly")
        # One more by e-mail: its page opened, never answered.
        status, accepted = await w.api.post("/api/v1/triggers", {
            "survey": "nps", "idempotency_key": "page-1", "channel": "email", "delay": "PT0S",
            "customer": {"external_id": "crm-page", "email": "page@example.com"}})
        assert status == 202, accepted
        assert await w.dispatcher.tick() == 1
        async with w.api.services.factory() as session:
            token = await session.scalar(select(DeliveryRow.token).where(
                DeliveryRow.id == accepted["delivery_id"]))
        page = await w.api.client.get(f"/s/{token}")
        assert page.status == 200
        # Two days later, three more sent and one answered: outside the first day.
        w.api.clock.advance(days=2)
        await send_nps(w.api, range(6001, 6004))
        assert await w.dispatcher.tick() == 3
        await w.customer.tap(6001, "3")

        first = await metrics(w.api, f"&from={DAY}&to={DAY}")
        assert first["response_rate"] == {"of": 11, "count": 4,
                                          "percent": pytest.approx(400 / 11),
                                          "anonymous_answers": 0}
        telegram = await metrics(w.api, f"&from={DAY}&to={DAY}&channel=telegram")
        assert (telegram["response_rate"]["of"], telegram["response_rate"]["count"],
                telegram["response_rate"]["percent"]) == (10, 4, 40.0)
        # Started: the four who answered; the six chats shown the question and the page
        # opened, never answered, are apart, and nobody stopped at the first question.
        assert first["completion_rate"] == {"of": 4, "count": 4, "percent": 100.0}
        assert first["opened_not_answered"] == 7
        assert [(d["step"], d["stopped"]) for d in first["drop_off"]] == [
            ("score", 0), ("reason", 0), ("thanks", 0)]
        later = await metrics(w.api, "&from=2026-03-04&to=2026-03-04")
        assert (later["response_rate"]["of"], later["response_rate"]["count"]) == (3, 1)
        # The one who gave a score and not the "why?" stopped there.
        assert later["completion_rate"] == {"of": 1, "count": 0, "percent": 0.0}
        assert [(d["step"], d["stopped"]) for d in later["drop_off"]][:2] == [
            ("score", 0), ("reason", 1)]
        assert later["opened_not_answered"] == 2
        whole = await metrics(w.api)
        assert (whole["response_rate"]["of"], whole["response_rate"]["count"]) == (14, 5)
        # The dashboard says the same, in words.
        assert (await log_in(w.api)).status == 303
        overview = await (await w.api.client.get("/admin/")).text()
        assert "Response rate: 5 answered of 14 surveys sent (35.7 %)" in overview
        survey = await (await w.api.client.get("/admin/surveys/nps")).text()
        assert ("5 dialogues started (at their first answer), 4 completed (80.0 %); "
                "9 opened, not answered") in survey


async def test_the_margin_needs_30_answers_and_never_passes_100(db_url: str) -> None:
    async with serving(db_url) as api:
        await visitors(api, [10, 0])
        tiny = (await metrics(api, "&respondent=anonymous"))["overall"]["nps"]
        # The normal approximation would say ±138.6 here.
        assert (tiny["score"], tiny["margin"], tiny["margin_note"]) == (
            0.0, None, "too few answers")
        await visitors(api, [10, 0] * 13 + [10], first=2)
        at_29 = (await metrics(api, "&respondent=anonymous"))["overall"]["nps"]
        assert (at_29["total"], at_29["margin"], at_29["margin_note"]) == (
            29, None, "too few answers")
        await visitors(api, [0], first=29)
        at_30 = (await metrics(api, "&respondent=anonymous"))["overall"]["nps"]
        # 15 promoters and 15 detractors: each answer +1 or -1, mean 0, variance 1.
        assert (at_30["total"], at_30["score"], at_30["margin_note"]) == (30, 0.0, None)
        assert at_30["margin"] == pytest.approx(1.959964 / 30 ** 0.5 * 100, rel=1e-5)
        assert at_30["margin"] <= 100


async def test_a_two_pick_choice_is_one_answer_in_the_report_and_prometheus(
        db_url: str, tmp_path: Path) -> None:
    async with serving(db_url) as api:
        status, accepted = await api.post("/api/v1/triggers", {
            **trigger("call-1", telegram_id=7007), "delay": "PT0S"})
        assert status == 202, accepted
        caller, surveys = Who("telegram", "7007"), api.services.surveys
        await surveys.begin(caller, "post_call_csat")
        await surveys.reply(caller, Reply.typed("1"))
        before = await samples(api)
        assert await surveys.reply(caller, Reply.button("what_went_wrong", "waiting,rude"))
        after = await samples(api)

        counted = {name: value(after, "otklik_answers_recorded_total", channel="telegram",
                               metric=name)
                   - value(before, "otklik_answers_recorded_total", channel="telegram",
                           metric=name) for name in ("choice", "csat")}
        assert counted == {"choice": 1.0, "csat": 0.0}
        report = otklik("report", "--survey", "post_call_csat", db_url=db_url, cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        [line] = [line for line in report.stdout.splitlines()
                  if line.startswith("what_went_wrong")]
        assert line.split()[1:3] == ["choice", "1"]
        assert "waiting 1, not_solved 0, rude 1, other 0" in line
