"""The web channel over real HTTP on loopback: a delivery's hosted page, e-mail score
links (the score chosen, stored on Send), unsubscribe, the anonymous survey and the
widget's API. Every bad request gets a clear 4xx page or JSON error, and nothing is stored
twice."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.services.scripts import load_scripts
from storage.models import AlertRow, AnswerRow, CustomerRow, DeliveryRow, DialogueRow, OutboxRow
from storage.uow import Database
from testkit.botapi import BotApiStub
from tests.e2e.trigger_support import SURVEYS, Api, serving, trigger

TEAM_CHAT = -1001234

ORIGIN = "https://shop.example.com"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url, widget_origins=[ORIGIN], anonymous_rate=1000) as api:
        yield api


async def delivery(api: Api, key: str = "k", survey: str = "nps", **customer: Any) -> str:
    """A scheduled delivery of `survey`; its token."""
    status, body = await api.post("/api/v1/triggers", {
        **trigger(key, survey=survey, **customer), "delay": "PT0S"})
    assert status == 202, body
    row = await Database(api.services.factory).read(
        lambda store: store.deliveries.get(body["delivery_id"]))
    assert row is not None
    assert row.token is not None
    return row.token


async def answers(api: Api) -> list[tuple[str, int | None, str | None]]:
    async with api.services.factory() as session:
        rows = await session.scalars(select(AnswerRow).order_by(AnswerRow.id))
        return [(a.step_id, a.score, a.text) for a in rows]


async def status_of(api: Api, token: str) -> str:
    row = await Database(api.services.factory).read(lambda store: store.deliveries.by_token(token))
    assert row is not None
    return row.status


async def page(api: Api, path: str) -> tuple[int, str, dict[str, str]]:
    response = await api.client.get(path, allow_redirects=False)
    return response.status, await response.text(), dict(response.headers)


def form_of(html: str) -> dict[str, str]:
    csrf = CSRF.search(html)
    session = re.search(r'name="session" value="(\d+)"', html)
    position = re.search(r'name="position" value="(\d+)"', html)
    assert csrf, html
    assert session, html
    assert position, html
    return {"csrf": csrf[1], "session": session[1], "position": position[1]}


async def submit(api: Api, path: str, html: str, **fields: str) -> tuple[int, str, str]:
    response = await api.client.post(path, data={**form_of(html), **fields},
                                     allow_redirects=False)
    return response.status, response.headers.get("Location", ""), await response.text()


async def choose(api: Api, path: str, label: str) -> int:
    """Tap the option labelled `label` on the question the page at `path` shows."""
    _, html, _ = await page(api, path)
    found = re.search(rf'value="(\d+)"[^>]*><span>{re.escape(label)}</span>', html)
    assert found, html
    return (await submit(api, path, html, answer=found[1]))[0]


async def test_a_customer_completes_the_survey_on_the_hosted_page(api: Api) -> None:
    token = await delivery(api)
    status, html, headers = await page(api, f"/s/{token}")
    assert status == 200
    assert "How likely are you to recommend us" in html
    assert "Question 1 / 2" in html
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"  # the token must not leak
    assert headers["X-Frame-Options"] == "DENY"
    assert "otklik_csrf" in headers["Set-Cookie"]
    assert "HttpOnly" in headers["Set-Cookie"]

    code, where, _ = await submit(api, f"/s/{token}", html, answer="9")
    assert (code, where) == (303, f"/s/{token}")
    assert await status_of(api, token) == "answered"
    _, html, _ = await page(api, f"/s/{token}")
    assert "main reason for your score" in html
    code, where, done = await submit(api, f"/s/{token}", html, text="Fast and friendly")
    assert code == 200
    assert "Thank you for your feedback!" in done  # the script's own closing words
    status, html, _ = await page(api, f"/s/{token}")  # the link, opened again later
    assert status == 200
    assert "Thank you" in html
    assert await answers(api) == [("score", 9, None), ("reason", None, "Fast and friendly")]
    assert await status_of(api, token) == "completed"


async def test_a_form_sent_twice_records_one_answer(api: Api) -> None:
    token = await delivery(api)
    _, html, _ = await page(api, f"/s/{token}")
    first = await submit(api, f"/s/{token}", html, answer="9")
    again = await submit(api, f"/s/{token}", html, answer="3")  # the same form, resent
    assert first[0] == again[0] == 303
    assert await answers(api) == [("score", 9, None)]


@pytest.mark.parametrize("csrf", ["", "forged-token-of-the-right-length-0123456789ab"])
async def test_a_form_without_the_csrf_cookie_value_is_refused(api: Api, csrf: str) -> None:
    token = await delivery(api)
    _, html, _ = await page(api, f"/s/{token}")
    code, _, body = await submit(api, f"/s/{token}", html, answer="9", csrf=csrf)
    assert code == 403
    assert "This form has expired" in body
    assert await answers(api) == []


async def test_out_of_range_and_unreadable_answers_ask_again(api: Api) -> None:
    token = await delivery(api)
    _, html, _ = await page(api, f"/s/{token}")
    code, _, body = await submit(api, f"/s/{token}", html, answer="11")  # no 12th option
    assert code == 422
    assert 'role="alert"' in body
    code, _, body = await submit(api, f"/s/{token}", html, text="eleven")
    assert code == 422
    assert "0 to 10" in body or "0" in body
    code, _, body = await submit(api, f"/s/{token}", html, answer="x")
    assert code == 400
    assert await answers(api) == []


async def test_oversize_text_and_wrong_content_type_are_refused(api: Api) -> None:
    token = await delivery(api)
    _, html, _ = await page(api, f"/s/{token}")
    await submit(api, f"/s/{token}", html, answer="9")
    _, html, _ = await page(api, f"/s/{token}")
    code, _, body = await submit(api, f"/s/{token}", html, text="x" * 5000)
    assert code == 413
    assert "too long" in body
    code, _, _ = await submit(api, f"/s/{token}", html, text="y" * 2500)  # over max_length
    assert code == 422
    response = await api.client.post(f"/s/{token}", json={"answer": "9"})
    assert response.status == 415
    assert await answers(api) == [("score", 9, None)]


async def test_unknown_expired_and_finished_links_get_friendly_pages(api: Api) -> None:
    status, html, _ = await page(api, "/s/not-a-real-token-at-all")
    assert status == 410
    assert "This survey has closed" in html
    token = await delivery(api)
    async with api.services.factory() as session:
        await session.execute(update(DeliveryRow).values(status="expired"))
        await session.commit()
    status, html, _ = await page(api, f"/s/{token}")
    assert status == 410
    assert "Traceback" not in html
    async with api.services.factory() as session:
        await session.execute(update(DeliveryRow).values(status="completed"))
        await session.commit()
    status, html, _ = await page(api, f"/s/{token}")
    assert status == 200
    assert "Thank you" in html


async def test_the_page_speaks_the_customers_language(api: Api) -> None:
    token = await delivery(api, locale="ru")
    _, html, _ = await page(api, f"/s/{token}")
    assert 'lang="ru"' in html
    assert "Вопрос 1 / 2" in html
    assert "Далее" in html


async def sessions(api: Api) -> int:
    async with api.services.factory() as session:
        return len(list(await session.scalars(select(DialogueRow))))


def chosen(html: str, position: int = 1) -> list[str]:
    """The options of question `position` that the page shows checked (their indexes)."""
    return re.findall(rf'name="answer-{position}" value="(\d+)"[^>]*\bchecked\b', html)


async def test_an_email_score_link_shows_the_score_chosen_and_send_records_it_once(
        api: Api) -> None:
    token = await delivery(api)
    for _ in range(2):  # a mail scanner, then the customer: neither stores anything
        assert (await api.client.head(f"/e/{token}/9")).status == 200
        status, html, _ = await page(api, f"/e/{token}/9")
        assert status == 200
        assert chosen(html) == ["9"]
        assert "main reason for your score" in html  # the follow-up, in the same form
        assert 'name="follow" value="2"' in html
    assert (await answers(api), await sessions(api)) == ([], 0)
    assert await status_of(api, token) == "scheduled"
    form = {"csrf": CSRF.findall(html)[0], "follow": "2", "answer-1": "9",
            "text-2": "Fast and friendly"}
    response = await api.client.post(f"/e/{token}/9", data=form, allow_redirects=False)
    assert response.status == 200
    assert "Thank you for your feedback!" in await response.text()
    again = await api.client.post(f"/e/{token}/9", data=form, allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (303, f"/s/{token}")  # the thanks
    late = await api.client.get(f"/e/{token}/3", allow_redirects=False)
    assert late.status == 303  # answered already: the page, whatever the link says
    assert await answers(api) == [("score", 9, None), ("reason", None, "Fast and friendly")]
    assert await status_of(api, token) == "completed"

    other = await delivery(api, "k2", external_id="c2", telegram_id=5)
    out_of_range = await api.client.get(f"/e/{other}/11")
    assert out_of_range.status == 422
    assert "not on the scale" in await out_of_range.text()
    assert (await api.client.get("/e/nope/9")).status == 410
    forged = await api.client.post(f"/e/{other}/9", data={**form, "csrf": "x" * 43})
    assert forged.status == 403
    assert len(await answers(api)) == 2


async def test_a_send_resent_after_its_score_was_stored_stores_only_its_follow_up(
        api: Api) -> None:
    token = await delivery(api)
    _, html, _ = await page(api, f"/e/{token}/4")
    form = {"csrf": CSRF.findall(html)[0], "follow": "2", "answer-1": "4", "text-2": "Slow"}
    # Its first try stored the score and no more (the process was killed in between):
    _, first, _ = await page(api, f"/s/{token}")
    await submit(api, f"/s/{token}", first, answer="4")
    response = await api.client.post(f"/e/{token}/4", data=form, allow_redirects=False)
    assert response.status == 200
    assert "Thank you for your feedback!" in await response.text()
    assert await answers(api) == [("score", 4, None), ("reason", None, "Slow")]


async def test_the_follow_up_of_an_email_score_is_the_one_its_branch_asks(api: Api) -> None:
    token = await delivery(api, survey="ces_support")
    _, low, _ = await page(api, f"/e/{token}/2")
    assert chosen(low) == ["1"]  # the second option of 1-7
    assert "hardest part" in low
    _, high, _ = await page(api, f"/e/{token}/6")
    assert chosen(high) == ["5"]
    assert "hardest part" not in high
    assert 'name="follow"' not in high
    # On the page of a 2 the customer picks 6 instead: 6 asks nothing more, so the text
    # typed for a 2 is no answer to anything.
    response = await api.client.post(f"/e/{token}/2", data={
        "csrf": CSRF.findall(low)[0], "follow": "2", "answer-1": "5",
        "text-2": "The hold music"}, allow_redirects=False)
    assert response.status == 200
    assert "Thanks" in await response.text()
    assert await answers(api) == [("effort", 6, None)]


async def test_a_follow_up_the_engine_refuses_is_asked_again_on_the_page(api: Api) -> None:
    token = await delivery(api)
    _, html, _ = await page(api, f"/e/{token}/3")
    response = await api.client.post(f"/e/{token}/3", data={
        "csrf": CSRF.findall(html)[0], "follow": "2", "answer-1": "3", "text-2": "y" * 2500})
    assert response.status == 422  # longer than the script's max_length of 2000
    body = await response.text()
    assert f'action="/s/{token}"' in body  # the corrected text goes to the page
    code, _, done = await submit(api, f"/s/{token}", body, text="Too slow")
    assert code == 200
    assert "Thank you for your feedback!" in done
    assert await answers(api) == [("score", 3, None), ("reason", None, "Too slow")]


async def test_unsubscribe_asks_first_and_then_opts_out(api: Api) -> None:
    token = await delivery(api)
    status, html, _ = await page(api, f"/u/{token}")
    assert status == 200
    assert "Stop all surveys?" in html

    async def opted_out() -> bool:
        async with api.services.factory() as session:
            customer = await session.scalar(select(CustomerRow))
        assert customer is not None
        return customer.opted_out_at is not None

    assert not await opted_out()  # a GET changes nothing (mail scanners follow links)
    forged = await api.client.post(f"/u/{token}", data={"csrf": "x"})
    assert forged.status == 403
    assert not await opted_out()
    done = await api.client.post(f"/u/{token}", data={"csrf": CSRF.search(html)[1]})  # type: ignore[index]
    assert done.status == 200
    assert await opted_out()
    _, trigger_body = await api.post("/api/v1/triggers", trigger("after", survey="nps"))
    assert (trigger_body["status"], trigger_body["reason"]) == ("suppressed", "opted_out")


async def test_one_click_unsubscribe_from_a_mail_client(api: Api) -> None:
    token = await delivery(api)
    api.client.session.cookie_jar.clear()  # a mail client sends no cookie
    response = await api.client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status == 200
    async with api.services.factory() as session:
        customer = await session.scalar(select(CustomerRow))
    assert customer is not None
    assert customer.opted_out_at is not None


async def test_the_anonymous_survey_and_the_demo_at_the_root(api: Api) -> None:
    root = await api.client.get("/", allow_redirects=False)
    assert (root.status, root.headers["Location"]) == (302, "/w/nps")
    status, html, _ = await page(api, "/w/nps")
    assert status == 200
    code, where, _ = await submit(api, "/w/nps", html, answer="10")
    assert (code, where) == (303, "/w/nps")
    _, html, _ = await page(api, "/w/nps")
    code, _, thanks = await submit(api, "/w/nps", html, text="Love it")
    assert code == 200
    assert "Your answers are saved. Thank you!" in thanks
    # A respondent is shown none of our insides: no path, no command.
    assert "/admin" not in thanks
    assert "otklik " not in thanks
    status, html, _ = await page(api, "/w/nps")  # answered: not asked again
    assert "Thank you" in html
    assert await answers(api) == [("score", 10, None), ("reason", None, "Love it")]
    assert (await api.client.get("/w/no_such_survey")).status == 404


async def widget(api: Api, path: str, body: Any, origin: str | None = ORIGIN,
                 survey: str = "nps") -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Origin": origin} if origin else {}
    response = await api.client.post(f"/api/v1/widget/{survey}/{path}", json=body,
                                     headers=headers)
    return response.status, await response.json(), dict(response.headers)


async def test_the_widget_api_plays_the_survey_for_an_allowed_origin(api: Api) -> None:
    preflight = await api.client.options("/api/v1/widget/nps/start", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    status, state, headers = await widget(api, "start", {"page": f"{ORIGIN}/checkout"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert state["prompt"]["kind"] == "scale"
    assert len(state["prompt"]["options"]) == 11
    visitor = state["visitor"]
    answer = {"visitor": visitor, "session_id": state["session_id"], "position": 1}
    # The URL names the survey: an answer posted under another one is stale, not taken.
    status, _, _ = await widget(api, "answer", {**answer, "picked": [3]}, survey="ces_support")
    assert status == 200
    assert await answers(api) == []
    status, state, _ = await widget(api, "answer", {**answer, "picked": [3]})
    assert state["prompt"]["kind"] == "text"
    status, state, _ = await widget(api, "answer", {**answer, "position": 2, "text": "Slow"})
    assert (status, state["finished"]) == (200, True)
    assert await answers(api) == [("score", 3, None), ("reason", None, "Slow")]
    async with api.services.factory() as session:
        row = await session.scalar(select(AnswerRow))
    assert row is not None
    assert row.context == {"page": f"{ORIGIN}/checkout", "visitor": visitor}
    assert row.channel == "web"
    # resumes for the same visitor rather than starting again
    status, resumed, _ = await widget(api, "start", {"visitor": visitor})
    assert resumed["visitor"] == visitor


async def test_the_widget_refuses_other_origins_and_bad_bodies(api: Api) -> None:
    status, body, headers = await widget(api, "start", {}, origin="https://evil.example")
    assert (status, body["error"]["field"]) == (403, "Origin")
    assert "Access-Control-Allow-Origin" not in headers
    status, body, headers = await widget(api, "answer", {"visitor": "short"})
    assert (status, body["error"]["field"]) == (422, "visitor")
    assert headers["Access-Control-Allow-Origin"] == ORIGIN  # readable by the widget
    status, body, _ = await widget(api, "answer", {
        "visitor": "v" * 20, "session_id": 1, "position": 1, "picked": [1]})
    assert status == 410
    assert await answers(api) == []


async def test_anonymous_routes_are_rate_limited_per_address(db_url: str) -> None:
    async with serving(db_url, widget_origins=[ORIGIN], anonymous_rate=3) as api:
        statuses = [(await widget(api, "start", {}))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert (await api.client.get("/w/nps")).status == 429
        assert (await api.client.get("/healthz")).status == 200  # not an anonymous route


async def page_layout_survey(api: Api, tmp_path: Path) -> None:
    """post_call_csat as `csat_page`, laid out as one page: the same steps and branches."""
    source = (SURVEYS / "post_call_csat.yaml").read_text(encoding="utf-8")
    path = tmp_path / "csat_page.yaml"
    path.write_text(source.replace("id: post_call_csat", "id: csat_page\nweb_layout: page")
                    .replace("delay: PT15M", "delay: PT0S"), encoding="utf-8")
    await load_scripts(Database(api.services.factory), [path], actor="tests", now=api.clock.now)


async def test_a_script_laid_out_as_one_page_is_answered_in_one_form(
        api: Api, tmp_path: Path) -> None:
    await page_layout_survey(api, tmp_path)
    token = await delivery(api, survey="csat_page", locale="en")
    status, html, _ = await page(api, f"/s/{token}")
    assert status == 200
    assert 'name="answer-1"' in html  # the score
    assert 'name="answer-2"' in html  # what went wrong (a branch)
    assert 'name="answer-4"' in html  # resolved?
    fields = {"csrf": CSRF.search(html)[1], "session": form_of_session(html),  # type: ignore[index]
              "layout": "page"}
    missing = await api.client.post(f"/s/{token}", data={**fields, "answer-4": "0"})
    assert missing.status == 422  # the score is required: nothing goes in
    assert await answers(api) == []
    # A 5 skips the "what went wrong" branch: its field is not read.
    sent = await api.client.post(f"/s/{token}", data={**fields, "answer-1": "4", "answer-2": "1",
                                                      "answer-4": "0"}, allow_redirects=False)
    assert sent.status == 200  # the thank-you at once
    assert await answers(api) == [("csat", 5, None), ("resolved", 1, None)]
    assert await status_of(api, token) == "completed"


def form_of_session(html: str) -> str:
    found = re.search(r'name="session" value="(\d+)"', html)
    assert found, html
    return found[1]


async def test_a_low_score_on_the_web_alerts_the_team(db_url: str) -> None:
    """The alert and the comment under it reach the team chat through the outbox's team
    sink, carried out when the page's request is answered; both are recorded delivered."""
    async with BotApiStub() as stub, serving(db_url, telegram=True,
                                             telegram_api_base=stub.base_url,
                                             admin_chat_id=TEAM_CHAT) as api:
        token = await delivery(api)
        _, html, _ = await page(api, f"/s/{token}")
        await submit(api, f"/s/{token}", html, answer="2")  # an NPS detractor
        [alert] = stub.sent(TEAM_CHAT)
        _, html, _ = await page(api, f"/s/{token}")
        await submit(api, f"/s/{token}", html, text="Nobody called back")
        async with api.services.factory() as session:
            events = [(row.event, row.delivered_at is not None) for row in await session.scalars(
                select(OutboxRow).where(OutboxRow.sink == "team").order_by(OutboxRow.id))]
            posted = await session.scalar(select(AlertRow.message_id))
    assert "Low NPS score: 2" in alert["text"]
    assert "agent_name\u2069=\u2068Anna" in alert["text"]  # isolated: bot.services.safe_text
    [_, comment] = stub.sent(TEAM_CHAT)
    assert comment["text"].endswith("\u2068Nobody called back\u2069")
    assert comment["reply_parameters"]["message_id"] == int(str(posted))
    assert events == [("alert.raised", True), ("alert.comment", True)]
