"""GET /api/v1/answers over real HTTP on loopback, on SQLite and PostgreSQL: answers of real
dialogues, filtered, paged by cursor without gaps or repeats, and streamed as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from bot.services import exports
from bot.services.exports import AnswerFilters
from tests.e2e.admin_support import answer_nps
from tests.e2e.test_web_pages import page, submit
from tests.e2e.trigger_support import NOON, Api, serving


@pytest.fixture
async def api(db_url: str) -> Any:
    async with serving(db_url, api_tokens=[SecretStr("trigger-only-token")]) as api:
        yield api


async def test_auth_is_required_and_only_the_admin_token_will_do(api: Api) -> None:
    for token, refused in ((None, 401), ("wrong", 401), ("trigger-only-token", 403)):
        status, body = await api.get("/api/v1/answers", token=token)
        assert (status, body["error"]["field"]) == (refused, "Authorization")
    response = await api.client.get("/api/v1/answers", headers={"Accept": "text/csv"})
    assert response.status == 401
    status, body = await api.get("/api/v1/answers")
    assert (status, body) == (200, {"items": [], "next_cursor": None})


async def test_an_answer_carries_its_text_and_the_customers_external_id_only(api: Api) -> None:
    session_id = await answer_nps(api, 1, 3, "Долго ждал ответа", email="anna@example.com",
                                  phone="+14155550123", first_name="Anna",
                                  context={"shop": "moscow-1"})
    status, body = await api.get("/api/v1/answers")
    assert status == 200
    reason, score = body["items"]  # newest first; one turn after the other, same time
    assert (score["step_id"], score["metric"], score["score"], score["text"]) == (
        "score", "nps", 3, None)
    assert (reason["step_id"], reason["text"], reason["score"]) == (
        "reason", "Долго ждал ответа", None)
    for item in (reason, score):
        assert item["customer"] == "crm-1"
        assert (item["survey_id"], item["script_version"], item["session_id"]) == (
            "nps", 1, session_id)
        assert (item["channel"], item["context"]) == ("telegram", {"shop": "moscow-1"})
        assert item["answered_at"].startswith("2026-03-02T12:00:00")
    assert "anna@example.com" not in str(body)
    assert "+14155550123" not in str(body)


async def test_filters(api: Api) -> None:
    await answer_nps(api, 1, 2, "Грубый ОПЕРАТОР, 100% плохо")
    api.clock.advance(days=1)
    await answer_nps(api, 2, 9, "Всё отлично")
    api.clock.advance(days=1)
    await answer_nps(api, 3, 10)

    async def ids(query: str) -> list[tuple[str, int | None, str | None]]:
        status, body = await api.get(f"/api/v1/answers?{query}")
        assert status == 200, body
        return [(i["customer"], i["score"], i["text"]) for i in body["items"]]

    assert await ids("step=score&score_max=6") == [("crm-1", 2, None)]
    assert await ids("step=score&score_min=9&score_max=9") == [("crm-2", 9, None)]
    assert await ids("has_text=true") == [("crm-2", None, "Всё отлично"),
                                          ("crm-1", None, "Грубый ОПЕРАТОР, 100% плохо")]
    assert len(await ids("has_text=false")) == 3
    # Case-insensitive in Cyrillic on SQLite too; % is a character, not a wildcard.
    assert await ids("q=оператор") == [("crm-1", None, "Грубый ОПЕРАТОР, 100% плохо")]
    assert await ids("q=100%25") == [("crm-1", None, "Грубый ОПЕРАТОР, 100% плохо")]
    assert await ids("q=1%25%25") == []
    assert len(await ids("survey=nps")) == 5
    assert await ids("survey=post_call_csat") == []
    assert await ids("channel=email") == []
    # `to` as a date includes that day; `from` as a date-time is inclusive.
    day = NOON.date()
    assert {c for c, _, _ in await ids(f"from={day}&to={day}")} == {"crm-1"}
    start = (NOON + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert {c for c, _, _ in await ids(f"from={start}")} == {"crm-2", "crm-3"}
    assert {c for c, _, _ in await ids(f"to={day + timedelta(days=1)}&step=score")} == {
        "crm-1", "crm-2"}


@pytest.mark.parametrize(("query", "field"), [
    ("score_min=abc", "score_min"), ("score_max=1.5", "score_max"),
    ("score_min=5&score_max=3", "score_max"), ("from=yesterday", "from"),
    ("to=2026-13-01", "to"), ("from=2026-03-05&to=2026-03-01", "to"),
    ("has_text=maybe", "has_text"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("sruvey=nps", "sruvey"), ("q=", "q"), ("respondent=everyone", "respondent"),
])
async def test_bad_filters_name_the_parameter(api: Api, query: str, field: str) -> None:
    status, body = await api.get(f"/api/v1/answers?{query}")
    assert (status, body["error"]["field"]) == (422, field), body
    response = await api.client.get(f"/api/v1/answers?{query}", headers={
        "Authorization": "Bearer admin-token-for-tests", "Accept": "text/csv"})
    assert response.status == 422


async def test_a_cursor_not_from_the_api_is_refused(api: Api) -> None:
    for cursor in ("garbage", "eyJhIjoxfQ", "WyJ4IiwxXQ"):
        status, body = await api.get(f"/api/v1/answers?cursor={cursor}")
        assert (status, body["error"]["field"]) == (400, "cursor")


async def test_paging_has_no_gaps_or_repeats_even_as_answers_arrive(api: Api) -> None:
    for n in range(1, 6):
        await answer_nps(api, n, n, f"text {n}")  # two answers each, at the same moment
        if n % 2:
            api.clock.advance(minutes=1)
    _, everything = await api.get("/api/v1/answers?limit=500")
    expected = [item["id"] for item in everything["items"]]
    assert len(expected) == 10
    order = [(item["answered_at"], item["id"]) for item in everything["items"]]
    assert order == sorted(order, reverse=True)

    seen: list[int] = []
    status, page = await api.get("/api/v1/answers?limit=3")
    seen += [item["id"] for item in page["items"]]
    api.clock.advance(minutes=5)
    await answer_nps(api, 9, 7, "arrived while paging")  # newer: it belongs before page 1
    while page["next_cursor"] is not None:
        status, page = await api.get(f"/api/v1/answers?limit=3&cursor={page['next_cursor']}")
        assert status == 200
        seen += [item["id"] for item in page["items"]]
    assert seen == expected
    _, fresh = await api.get("/api/v1/answers?limit=2")
    assert [item["text"] for item in fresh["items"]] == ["arrived while paging", None]


def _rows(raw: bytes) -> list[list[str]]:
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


async def test_csv_streams_every_page_with_a_bom_and_proper_quoting(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    tricky = 'Оператор сказал "ждите", потом\nбросил трубку; =1+1'
    await answer_nps(api, 1, 1, tricky)
    await answer_nps(api, 2, 8, "=HYPERLINK(\"http://evil\")")
    for n in range(3, 6):
        await answer_nps(api, n, 10)
    monkeypatch.setattr(exports, "CSV_PAGE", 2)  # 7 answers: four pages of the table
    response = await api.client.get("/api/v1/answers?survey=nps", headers={
        "Authorization": "Bearer admin-token-for-tests", "Accept": "text/csv"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Transfer-Encoding"] == "chunked"
    # Streamed, so prepared before any middleware could add them: set as it is prepared.
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="answers-nps-2026-03-02.csv"')
    rows = _rows(await response.read())
    header, *data = rows
    assert header == list(exports.CSV_COLUMNS)
    _, page = await api.get("/api/v1/answers?limit=500")
    assert [int(row[0]) for row in data] == [item["id"] for item in page["items"]]
    texts = {row[5]: row[10] for row in data if row[10]}
    assert texts == {"crm-1": tricky, "crm-2": "'=HYPERLINK(\"http://evil\")"}
    scores = sorted(int(row[8]) for row in data if row[8])
    assert scores == [1, 8, 10, 10, 10]
    assert {row[13] for row in data} == {"known"}
    assert {row[14] for row in data} == {'{"shop": "moscow-1"}'}

    _, audit = await api.get("/api/v1/audit?action=answers.exported")
    [entry] = audit["items"]
    assert (entry["actor"], entry["target"], entry["details"]) == (
        "admin", "nps", {"survey": "nps"})


async def test_the_csv_generator_reads_one_page_per_chunk(api: Api) -> None:
    for n in range(1, 4):
        await answer_nps(api, n, n, f"why {n}")  # six answers
    chunks = [chunk async for chunk in api.services.exports.csv(
        AnswerFilters(survey="nps"), page_size=4)]
    assert len(chunks) == 3  # the header, four answers, two
    assert len(_rows(b"".join(chunks))) == 7
    only_texts = [chunk async for chunk in api.services.exports.csv(
        AnswerFilters(has_text=True, q="WHY 2"), page_size=4)]
    assert [row[10] for row in _rows(b"".join(only_texts))[1:]] == ["why 2"]


async def test_answers_say_whose_they_are_and_filter_on_it(api: Api) -> None:
    await answer_nps(api, 1, 9, "Всё хорошо")  # a known customer, in Telegram
    _, html, _ = await page(api, "/w/nps")  # a visitor of the demo: anonymous
    code, _, _ = await submit(api, "/w/nps", html, answer="4")
    assert code == 303

    _, body = await api.get("/api/v1/answers")
    assert sorted((item["channel"], item["step_id"], item["respondent"])
                  for item in body["items"]) == [
        ("telegram", "reason", "known"), ("telegram", "score", "known"),
        ("web", "score", "anonymous")]
    _, body = await api.get("/api/v1/answers?respondent=anonymous")
    assert [(item["score"], item["respondent"]) for item in body["items"]] == [
        (4, "anonymous")]
    _, body = await api.get("/api/v1/answers?respondent=known")
    assert {item["respondent"] for item in body["items"]} == {"known"}
    assert len(body["items"]) == 2

    response = await api.client.get("/api/v1/answers?respondent=anonymous", headers={
        "Authorization": "Bearer admin-token-for-tests", "Accept": "text/csv"})
    header, *data = _rows(await response.read())
    column = header.index("respondent")
    assert [(row[8], row[column]) for row in data] == [("4", "anonymous")]
