"""The web channel in a real headless Chromium: a customer answers the NPS survey on a
delivery's hosted page on a phone (JavaScript on and off, and by keyboard alone), from an
e-mail's score link (stored only when they tap Send), on the anonymous demo page, and
through the widget embedded in a page of another site; the answers are in the database.
Every page state is saved as a screenshot in tests/artifacts/ (and the survey page for the
README in docs/ with OTKLIK_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Locator, Page, expect
from sqlalchemy import select

from storage.models import AnswerRow, DialogueRow
from tests.browser.conftest import Visitor, visiting
from tests.e2e.trigger_support import Api, serving, trigger

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the browser's loop (conftest)

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "survey-page.png"
QUESTION = "How likely are you to recommend us to a friend or colleague, 0-10?"
REASON = "What is the main reason for your score?"
WHY = "Quick answers on the phone, and Anna knew my contract."


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: these tests are about what the browser does; tests/e2e runs the same
    pages over PostgreSQL too."""
    return f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"


@pytest_asyncio.fixture(loop_scope="module")
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url) as api:
        yield api


def url(api: Api, path: str) -> str:
    return str(api.client.make_url(path))


async def deliver(api: Api, survey: str = "nps", key: str = "call-1") -> str:
    """A delivery scheduled by a trigger; its hosted page's token."""
    body = trigger(key, survey, first_name="Maria", locale="en")
    status, _ = await api.post("/api/v1/triggers", body)
    assert status == 202
    [delivery] = await api.deliveries()
    assert delivery.token is not None
    return delivery.token


async def answers(api: Api) -> list[AnswerRow]:
    async with api.services.factory() as session:
        return list(await session.scalars(select(AnswerRow).order_by(AnswerRow.id)))


async def stored(api: Api) -> list[tuple[str, int | None, str | None, str]]:
    return [(a.step_id, a.score, a.text, a.channel) for a in await answers(api)]


def option(page: Page, label: str) -> Locator:
    """The option a finger taps: its label (the radio inside is visually hidden)."""
    return page.locator("label.option").filter(has_text=re.compile(rf"^{re.escape(label)}$"))


async def give_the_reason(api: Api, phone: Visitor, page: Page) -> None:
    """The follow-up typed and sent after a 9: the thank-you page, both answers stored
    from the web, the delivery completed, and no console error on the way."""
    await page.get_by_label(REASON).fill(WHY)
    await page.get_by_role("button", name="Next").tap()

    await expect(page.get_by_role("heading")).to_have_text("Thank you!")
    await phone.shoot(page, "thanks")
    assert await stored(api) == [("score", 9, None, "web"), ("reason", None, WHY, "web")]
    [delivery] = await api.deliveries()
    assert delivery.status == "completed"
    assert phone.errors == []


async def test_a_customer_answers_the_hosted_page_on_a_phone(api: Api, phone: Visitor) -> None:
    token = await deliver(api)
    page = await phone.open(url(api, f"/s/{token}"))
    await expect(page.locator("legend")).to_have_text(QUESTION)
    await expect(page.locator(".progress-label")).to_have_text("Question 1 / 2")
    await phone.shoot(page, "score")

    await option(page, "9").tap()  # JavaScript sends the form at once
    await expect(page.get_by_label(REASON)).to_be_visible()
    assert page.url == url(api, f"/s/{token}")  # POST, then redirect back: reload-safe
    await phone.shoot(page, "reason")
    await give_the_reason(api, phone, page)


async def test_without_javascript_the_next_button_sends_the_answer(
        api: Api, phone_without_js: Visitor) -> None:
    phone = phone_without_js
    token = await deliver(api)
    page = await phone.open(url(api, f"/s/{token}"))
    await option(page, "9").tap()
    await expect(page.get_by_role("radio", name="9")).to_be_checked()
    await expect(page.locator("legend")).to_have_text(QUESTION)  # still here: nothing sent
    await phone.shoot(page, "score-picked")
    assert await stored(api) == []

    await page.get_by_role("button", name="Next").tap()
    await expect(page.get_by_label(REASON)).to_be_visible()
    await phone.shoot(page, "reason")
    await give_the_reason(api, phone, page)


async def untouched(api: Api, token: str) -> None:
    """Nothing stored for this delivery: no answer, no dialogue, still waiting to be sent."""
    async with api.services.factory() as session:
        dialogues = list(await session.scalars(select(DialogueRow)))
    [delivery] = await api.deliveries()
    assert (await stored(api), dialogues, delivery.token, delivery.status) == (
        [], [], token, "scheduled")


async def test_an_email_score_link_opens_the_page_and_only_send_records_it(
        api: Api, phone: Visitor) -> None:
    """A browser that loads an e-mail's score link and runs its scripts (a link scanner
    does as much) answers nothing; the customer's tap on Send does, once."""
    token = await deliver(api)
    page = await phone.open(url(api, f"/e/{token}/9"))
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate("() => document.readyState") == "complete"  # scripts ran
    await expect(page.get_by_role("radio", name="9")).to_be_checked()
    chosen = await option(page, "9").evaluate("e => getComputedStyle(e).backgroundColor")
    other = await option(page, "8").evaluate("e => getComputedStyle(e).backgroundColor")
    assert (chosen, other) == ("rgb(29, 78, 216)", "rgba(0, 0, 0, 0)")  # marked, in blue
    await expect(page.get_by_label(REASON)).to_be_visible()  # the follow-up, under it
    await phone.shoot(page, "score-chosen")
    await page.wait_for_timeout(500)  # anything the page's scripts might send, sent
    await untouched(api, token)
    twice = await phone.open(url(api, f"/e/{token}/9"))  # the e-mail's link tapped again
    await untouched(api, token)

    await page.get_by_label(REASON).fill(WHY)
    await page.get_by_role("button", name="Send").tap()
    await expect(page.get_by_role("heading")).to_have_text("Thank you!")
    await phone.shoot(page, "thanks")
    assert await stored(api) == [("score", 9, None, "web"), ("reason", None, WHY, "web")]
    await twice.get_by_role("button", name="Send").tap()  # the other tab's form, sent late
    await expect(twice.get_by_role("heading")).to_have_text("Thank you!")
    assert await stored(api) == [("score", 9, None, "web"), ("reason", None, WHY, "web")]
    assert phone.errors == []


async def test_on_an_email_score_page_another_score_can_be_picked_without_javascript(
        api: Api, phone_without_js: Visitor) -> None:
    phone = phone_without_js
    token = await deliver(api)
    page = await phone.open(url(api, f"/e/{token}/3"))
    await expect(page.get_by_role("radio", name="3")).to_be_checked()
    await option(page, "8").tap()
    await expect(page.get_by_role("radio", name="8")).to_be_checked()
    await phone.shoot(page, "score-changed")
    await untouched(api, token)
    await page.get_by_role("button", name="Send").tap()  # the follow-up left empty
    await expect(page.get_by_role("heading")).to_have_text("Thank you!")
    assert [(a.step_id, a.score) for a in await answers(api)] == [("score", 8)]
    [delivery] = await api.deliveries()
    assert delivery.status == "completed"


async def focused(page: Page) -> str:
    return str(await page.evaluate(
        "() => { const e = document.activeElement;"
        " return e.type === 'radio' ? 'radio ' + e.labels[0].innerText"
        " : e.tagName.toLowerCase() + ' ' + (e.innerText || ''); }"))


async def test_the_keyboard_alone_answers(api: Api, desktop: Visitor) -> None:
    token = await deliver(api)
    page = await desktop.open(url(api, f"/s/{token}"))
    await page.keyboard.press("Tab")
    assert await focused(page) == "radio 0"
    for _ in range(9):
        await page.keyboard.press("ArrowRight")
    await expect(page.get_by_role("radio", name="9")).to_be_checked()
    await expect(page.locator("legend")).to_have_text(QUESTION)  # arrows pick, never send
    await desktop.shoot(page, "score-focused")
    await page.keyboard.press("Enter")

    await expect(page.get_by_label(REASON)).to_be_focused()  # autofocus: type at once
    await page.keyboard.type(WHY)
    for _ in range(4):  # past Back and Skip
        await page.keyboard.press("Tab")
        if (await focused(page)).startswith("button Next"):
            break
    assert await focused(page) == "button Next"
    await desktop.shoot(page, "reason-next-focused")
    await page.keyboard.press("Enter")

    await expect(page.get_by_role("heading")).to_have_text("Thank you!")
    assert await stored(api) == [("score", 9, None, "web"), ("reason", None, WHY, "web")]
    assert desktop.errors == []


async def test_enter_on_a_later_question_goes_forward_not_back(
        api: Api, desktop: Visitor) -> None:
    """The second question of the call survey has a Back button before Next: Enter (the
    form's implicit submission) must still mean Next."""
    token = await deliver(api, "post_call_csat")
    page = await desktop.open(url(api, f"/s/{token}"))
    await page.keyboard.press("Tab")
    for _ in range(3):
        await page.keyboard.press("ArrowRight")
    await page.keyboard.press("Enter")
    await expect(page.locator("legend")).to_have_text("Was your issue resolved?")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Space")
    await expect(page.get_by_role("radio", name="Yes")).to_be_checked()
    await desktop.shoot(page, "resolved")
    await page.keyboard.press("Enter")

    await expect(page.get_by_role("heading")).to_have_text("Thank you!")
    assert [(a.step_id, a.score) for a in await answers(api)] == [("csat", 4), ("resolved", 1)]
    assert desktop.errors == []


async def test_the_anonymous_demo_page_stores_the_answers(api: Api, phone: Visitor) -> None:
    page = await phone.open(url(api, "/"))
    assert page.url == url(api, "/w/nps")
    await expect(page.locator("legend")).to_have_text(QUESTION)
    await phone.shoot(page, "score")
    await option(page, "9").tap()
    await page.get_by_label(REASON).fill(WHY)
    await phone.shoot(page, "reason")
    await page.get_by_role("button", name="Next").tap()

    await expect(page.get_by_role("heading")).to_have_text("Thank you!")
    await expect(page.get_by_text("Thank you for your feedback!")).to_be_visible()
    await phone.shoot(page, "thanks")
    assert await stored(api) == [("score", 9, None, "web"), ("reason", None, WHY, "web")]
    visitors = {a.context.get("visitor") for a in await answers(api)}
    [visitor] = [c for c in await phone.context.cookies() if c["name"] == "otklik_visitor"]
    assert visitors == {visitor["value"]}
    assert phone.errors == []


# -- the widget on another site ---------------------------------------------------------------


class Site:
    """A shop's page on its own origin, with Otklik's widget tag (the widget's server is
    set once it is listening: its settings must name this site's origin first)."""

    def __init__(self) -> None:
        self.widget = ""
        app = web.Application()
        app.router.add_get("/shop/checkout", self._page)
        self.server = TestServer(app)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>Checkout</title></head><body><h1>Thank you for your order</h1>"
            "<p>Order #1042 is on its way.</p>"
            f"<script src='{self.widget}/widget.js' data-survey='nps' async></script>"
            "</body></html>"))

    @property
    def origin(self) -> str:
        return str(self.server.make_url("/")).rstrip("/")

    @property
    def page(self) -> str:
        return str(self.server.make_url("/shop/checkout"))


@pytest_asyncio.fixture(loop_scope="module")
async def site() -> AsyncIterator[Site]:
    site = Site()
    await site.server.start_server()
    try:
        yield site
    finally:
        await site.server.close()


async def test_the_widget_on_an_allowed_site_stores_the_answers(
        db_url: str, site: Site, browser: Browser, phone: Visitor) -> None:
    async with serving(db_url, widget_origins=[site.origin]) as api:
        site.widget = url(api, "/").rstrip("/")
        page = await phone.open(site.page)
        widget = page.get_by_role("dialog", name="Net Promoter Score")
        await expect(widget).to_contain_text(QUESTION)
        await expect(widget.get_by_role("button", name="Close")).to_be_visible()
        await phone.shoot(page, "score")
        box = await widget.bounding_box()
        assert box is not None
        assert 0 <= box["x"] <= box["x"] + box["width"] <= 390  # on the screen, all of it
        await widget.get_by_role("button", name="9", exact=True).tap()
        await expect(widget).to_contain_text(REASON)
        await expect(widget.get_by_role("textbox")).to_be_focused()  # the next question's
        await widget.get_by_role("textbox").fill(WHY)
        await phone.shoot(page, "reason")
        await widget.get_by_role("button", name="OK").tap()

        await expect(widget).to_contain_text("Thank you for your feedback!")
        await phone.shoot(page, "thanks")
        assert await stored(api) == [("score", 9, None, "web"), ("reason", None, WHY, "web")]
        visitor = await page.evaluate("() => localStorage.getItem('otklik-visitor')")
        for answer in await answers(api):
            assert answer.context == {"page": site.page, "visitor": visitor}
        assert phone.errors == []

        # another visitor leaves the box empty: OK skips the optional question
        async with visiting(browser, f"{phone.name}-skipped") as other:
            theirs = (await other.open(site.page)).get_by_role("dialog")
            await theirs.get_by_role("button", name="6", exact=True).tap()
            await theirs.get_by_role("button", name="OK").tap()
            await expect(theirs).to_contain_text("Thank you for your feedback!")
            assert [(a.step_id, a.score, a.text) for a in await answers(api)][2:] == [
                ("score", 6, None)]
            assert other.errors == []
        await expect(widget).to_be_hidden(timeout=6000)  # it closes itself after the thanks


async def test_the_widget_on_a_site_not_allowed_shows_nothing(
        db_url: str, site: Site, phone: Visitor) -> None:
    async with serving(db_url, widget_origins=["https://shop.example.com"]) as api:
        site.widget = url(api, "/").rstrip("/")
        async with phone.context.expect_event(
                "requestfailed", lambda r: r.url.endswith("/api/v1/widget/nps/start")):
            page = await phone.open(site.page)
        await expect(page.get_by_role("heading")).to_have_text("Thank you for your order")
        await expect(page.get_by_role("dialog")).to_have_count(0)
        await phone.shoot(page, "no-widget")
        # what the browser hid from the page: the server refused the site's origin
        response = await api.client.post("/api/v1/widget/nps/start", json={},
                                         headers={"Origin": site.origin})
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
        async with api.services.factory() as session:
            assert list(await session.scalars(select(DialogueRow.id))) == []
        assert await answers(api) == []


# -- the README's screenshot ------------------------------------------------------------------


async def test_the_survey_page_for_the_readme(db_url: str, phone: Visitor) -> None:
    """The hosted page of the call survey as a customer's phone shows it; copied to
    docs/survey-page.png with OTKLIK_UPDATE_SCREENSHOT=1."""
    async with serving(db_url, bot_username="otklik_demo_bot") as api:
        await _readme_page(api, phone)


async def _readme_page(api: Api, phone: Visitor) -> None:
    token = await deliver(api, "post_call_csat")
    page = await phone.open(url(api, f"/s/{token}"))
    await expect(page.locator("legend")).to_have_text("How would you rate your call with Anna?")
    await phone.shoot(page, "survey-page")
    if os.environ.get("OTKLIK_UPDATE_SCREENSHOT") == "1":
        # the top of the phone's screen down to the card's end, one pixel per CSS pixel:
        # the README shows it at its natural size, a phone's width
        card = await page.locator("main").bounding_box()
        assert card is not None
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=DOCS_SCREENSHOT, scale="css", clip={
            "x": 0, "y": 0, "width": 390, "height": card["y"] + card["height"] + 16})
    assert phone.errors == []
