"""A stranger on a delivery survey: /w/{survey} and the widget serve only a script that
opts in (`anonymous: true`), and refuse any other exactly as an unknown survey, storing
nothing. The visitors of one that does are anonymous respondents: counted apart from the
known customers in the metrics, and their low scores alert the team only up to
ANONYMOUS_ALERTS_PER_HOUR per survey, however many arrive at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.models import AnswerRow, CustomerRow, DialogueRow
from tests.e2e.admin_support import answer_nps
from tests.e2e.test_web_pages import delivery, page, submit
from tests.e2e.trigger_support import Api, serving

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LIMIT = 3  # ANONYMOUS_ALERTS_PER_HOUR in these tests
BURST = 30


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, anonymous_rate=1000, anonymous_alerts_per_hour=LIMIT) as api:
        yield api


async def _rows(api: Api) -> list[int]:
    """How many customers, dialogues and answers are stored."""
    async with api.services.factory() as session:
        return [await session.scalar(select(func.count()).select_from(model)) or 0
                for model in (CustomerRow, DialogueRow, AnswerRow)]


async def _widget(api: Api, survey: str, path: str, body: dict[str, Any]
                  ) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(f"/api/v1/widget/{survey}/{path}", json=body)
    return response.status, await response.json()


async def test_a_stranger_learns_nothing_of_a_delivery_survey_and_stores_nothing(
        api: Api) -> None:
    before = await _rows(api)
    status, html, _ = await page(api, "/w/post_call_csat")
    unknown_status, unknown_html, _ = await page(api, "/w/no_such_survey")
    assert status == unknown_status == 404
    assert html == unknown_html  # the survey's existence is not given away
    assert "There is no such survey" in html

    # A form with a valid CSRF token (from a page that stores nothing) posted to it.
    _, confirm, _ = await page(api, "/u/any-token")
    csrf = CSRF.search(confirm)
    assert csrf is not None
    response = await api.client.post("/w/post_call_csat", data={
        "csrf": csrf[1], "session": "1", "position": "1", "answer": "0"})
    assert response.status == 404
    assert "There is no such survey" in await response.text()

    status, body = await _widget(api, "post_call_csat", "start", {})
    assert (status, body["error"]["field"]) == (404, "survey")
    status, body = await _widget(api, "post_call_csat", "answer", {
        "visitor": "v" * 20, "session_id": 1, "position": 1, "picked": [0]})
    assert (status, body["error"]["field"]) == (404, "survey")

    assert await _rows(api) == before


async def _metrics(api: Api, query: str) -> dict[str, Any]:
    status, body = await api.get(f"/api/v1/metrics?survey=nps{query}")
    assert status == 200, body
    return body


async def test_visitors_are_anonymous_and_counted_apart(api: Api) -> None:
    # A visitor of the demo: a detractor.
    _, html, _ = await page(api, "/w/nps")
    code, _, _ = await submit(api, "/w/nps", html, answer="2")
    assert code == 303
    # Known customers: one through a delivery's page, one in Telegram.
    token = await delivery(api, "page-1", survey="nps")
    _, html, _ = await page(api, f"/s/{token}")
    code, _, _ = await submit(api, f"/s/{token}", html, answer="9")
    assert code == 303
    await answer_nps(api, 1, 10)

    known = await _metrics(api, "")
    assert (known["overall"]["nps"]["total"], known["overall"]["nps"]["detractors"]) == (2, 0)
    assert known["overall"]["nps"]["score"] == 100.0
    assert known["response_rate"]["anonymous_answers"] == 1
    assert await _metrics(api, "&respondent=known") == known
    anonymous = await _metrics(api, "&respondent=anonymous")
    assert (anonymous["overall"]["nps"]["total"],
            anonymous["overall"]["nps"]["detractors"]) == (1, 1)
    grouped = await _metrics(api, "&group_by=respondent")
    assert [(g["key"], g["nps"]["total"], g["nps"]["score"]) for g in grouped["groups"]] == [
        ("anonymous", 1, -100.0), ("known", 2, 100.0)]
    assert grouped["overall"] == known["overall"]  # the headline stays the known one

    for wrong in ("everyone", "Known", ""):
        status, body = await api.get(f"/api/v1/metrics?survey=nps&respondent={wrong}")
        assert status in (400, 422), body
        assert body["error"]["field"] == "respondent"


async def test_a_burst_of_anonymous_low_scores_raises_at_most_the_limit(api: Api) -> None:
    async def low_score() -> None:
        status, started = await _widget(api, "nps", "start", {})
        assert status == 200, started
        status, answered = await _widget(api, "nps", "answer", {
            "visitor": started["visitor"], "session_id": started["session_id"],
            "position": started["prompt"]["position"], "picked": [0]})
        assert status == 200, answered

    await asyncio.wait_for(asyncio.gather(*(low_score() for _ in range(BURST))), 120)

    status, page_ = await api.get("/api/v1/alerts?survey=nps")
    assert status == 200
    assert len(page_["alerts"]) == LIMIT
    anonymous = await _metrics(api, "&respondent=anonymous")
    assert anonymous["overall"]["nps"]["detractors"] == BURST  # every answer is kept
    # A known customer's low score is never held back by the visitors' limit.
    await answer_nps(api, 1, 1)
    _, page_ = await api.get("/api/v1/alerts?survey=nps")
    assert len(page_["alerts"]) == LIMIT + 1
