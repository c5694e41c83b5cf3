"""The dashboard at HTTP level: login with ADMIN_TOKEN, the signed session cookie, CSRF on
every form, and the pages' content against the database."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.services.surveys import Who
from conversations.engine import Reply
from tests.e2e.admin_support import answer_nps
from tests.e2e.dashboard_support import BROKEN, csrf_of, log_in, submit
from tests.e2e.trigger_support import serving

pytestmark = pytest.mark.asyncio


async def test_pages_need_a_session(db_url: str) -> None:
    async with serving(db_url) as api:
        for path in ("/admin/", "/admin/alerts", "/admin/scripts", "/admin/audit"):
            response = await api.client.get(path, allow_redirects=False)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/admin/login?next=")
        assert (await api.client.get("/admin", allow_redirects=False)).status == 301


async def test_login_sets_a_strict_session_cookie_and_names_the_person(db_url: str) -> None:
    async with serving(db_url) as api:
        response = await log_in(api)
        assert response.status == 303
        assert response.headers["Location"] == "/admin/"
        cookie = response.headers["Set-Cookie"]
        assert "otklik_admin=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/admin" in cookie
        page = await api.client.get("/admin/")
        assert page.status == 200
        text = await page.text()
        assert "Olga" in text
        assert "nps" in text
        assert page.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_a_wrong_token_or_no_name_is_refused(db_url: str) -> None:
    async with serving(db_url) as api:
        for kwargs in ({"token": "guess"}, {"name": ""}):
            response = await log_in(api, **kwargs)
            assert response.status == 401
            assert "otklik_admin=" not in response.headers.get("Set-Cookie", "")
        assert (await api.client.get("/admin/", allow_redirects=False)).status == 303


async def test_without_admin_token_the_dashboard_is_off(db_url: str) -> None:
    async with serving(db_url, admin_token=None) as api:
        response = await api.client.get("/admin/login")
        assert response.status == 503
        assert "ADMIN_TOKEN" in await response.text()


async def test_forms_without_the_csrf_token_are_refused(db_url: str) -> None:
    async with serving(db_url) as api:
        csrf = await csrf_of(api, "/admin/login")
        bad: dict[str, Any] = {"csrf": "forged", "name": "x", "token": "admin-token-for-tests"}
        assert (await api.client.post("/admin/login", data=bad,
                                      allow_redirects=False)).status == 403
        await log_in(api)
        response = await api.client.post("/admin/logout", data={"csrf": csrf + "x"},
                                         allow_redirects=False)
        assert response.status == 403
        assert (await api.client.get("/admin/")).status == 200  # still logged in


async def test_a_tampered_or_foreign_cookie_is_no_session(db_url: str) -> None:
    async with serving(db_url) as api:
        await log_in(api)
        jar = api.client.session.cookie_jar
        value = next(c.value for c in jar if c.key == "otklik_admin")
        jar.clear()
        api.client.session.cookie_jar.update_cookies({"otklik_admin": value[:-2] + "AA"})
        assert (await api.client.get("/admin/", allow_redirects=False)).status == 303
    # The same cookie under another ADMIN_TOKEN: rotating the token ends the sessions.
    async with serving(db_url, admin_token="another-token") as api:
        api.client.session.cookie_jar.update_cookies({"otklik_admin": value})
        assert (await api.client.get("/admin/", allow_redirects=False)).status == 303


async def test_login_never_redirects_off_site(db_url: str) -> None:
    async with serving(db_url) as api:
        csrf = await csrf_of(api, "/admin/login")
        for target in ("https://evil.example/", "//evil.example/admin/", "/s/abc"):
            response = await api.client.post("/admin/login", data={
                "csrf": csrf, "name": "Olga", "token": "admin-token-for-tests",
                "next": target}, allow_redirects=False)
            assert response.headers["Location"] == "/admin/", target


async def test_logout_ends_the_session(db_url: str) -> None:
    async with serving(db_url) as api:
        await log_in(api)
        csrf = await csrf_of(api, "/admin/")
        response = await api.client.post("/admin/logout", data={"csrf": csrf},
                                         allow_redirects=False)
        assert response.status == 303
        assert (await api.client.get("/admin/", allow_redirects=False)).status == 303


GOOD = """id: quick
default_locale: en
title: {en: Quick check}
steps:
  - id: score
    type: csat
    text: {en: "How satisfied are you?"}
"""


async def test_a_broken_script_shows_its_line_and_field_and_stores_nothing(db_url: str) -> None:
    async with serving(db_url) as api:
        await log_in(api)
        response = await submit(api, "/admin/scripts", "/admin/scripts", source=BROKEN)
        assert response.status == 422
        text = await response.text()
        assert "pasted.yaml:8: steps.0.scale" in text
        assert "How likely?" in text  # the pasted source is kept for fixing
        assert "broken" not in [row.survey_id for row, _ in await api.services.admin.surveys()]


async def test_a_script_uploaded_as_a_file_is_stored_switched_and_audited(db_url: str) -> None:
    async with serving(db_url) as api:
        await log_in(api)
        csrf = await csrf_of(api, "/admin/scripts")
        form = aiohttp.FormData()
        form.add_field("csrf", csrf)
        form.add_field("file", GOOD.encode(), filename="quick.yaml",
                       content_type="application/yaml")
        response = await api.client.post("/admin/scripts", data=form)
        assert response.status == 200
        assert "quick stored as version 1" in await response.text()
        changed = GOOD.replace("How satisfied", "How happy")
        assert "quick stored as version 2" in await (await submit(
            api, "/admin/scripts", "/admin/scripts", source=changed)).text()
        page = await (await api.client.get("/admin/scripts/quick")).text()
        assert "-    text: {en: &#34;How satisfied" in page  # the diff, escaped
        response = await submit(api, "/admin/scripts/quick", "/admin/scripts/quick/activate",
                                version="1")
        assert response.status == 303
        assert dict((r.survey_id, a) for r, a in await api.services.admin.surveys())[
            "quick"] == 1
        await submit(api, "/admin/scripts/quick", "/admin/scripts/quick/deactivate")
        assert dict((r.survey_id, a) for r, a in await api.services.admin.surveys())[
            "quick"] is None
        audit = await (await api.client.get("/admin/audit")).text()
        for action in ("script.stored", "script.activated", "script.deactivated"):
            assert action in audit
        assert "dashboard:Olga" in audit


async def test_customers_are_found_exported_and_erased(db_url: str) -> None:
    async with serving(db_url) as api:
        await answer_nps(api, 7, 3, "Рекомендую, но долго", email="ivan@example.com",
                         first_name="Ivan")
        await log_in(api)
        page = await (await api.client.get("/admin/customers?q=ivan@example.com")).text()
        assert "crm-7" in page
        assert "Ivan" in page
        export = await api.client.get("/admin/customers/crm-7/export")
        assert export.status == 200
        assert "attachment" in export.headers["Content-Disposition"]
        assert "Рекомендую, но долго" in await export.text()
        unconfirmed = await submit(api, "/admin/customers", "/admin/customers/crm-7/erase")
        assert unconfirmed.status == 303
        assert "Ivan" in await (await api.client.get("/admin/customers?q=crm-7")).text()
        erased = await submit(api, "/admin/customers", "/admin/customers/crm-7/erase",
                              confirm="yes")
        assert erased.headers["Location"] == "/admin/customers?erased=1"
        page = await (await api.client.get("/admin/customers?q=crm-7")).text()
        assert "Ivan" not in page
        assert "(erased)" in page
        audit = await (await api.client.get("/admin/audit?action=customer.erased")).text()
        assert "crm-7" in audit


async def test_an_alert_is_taken_noted_and_resolved_from_its_page(db_url: str) -> None:
    async with serving(db_url) as api:
        await answer_nps(api, 3, 2, "Никто не перезвонил", first_name="Olga")
        [alert] = await api.services.alerts.queue(status="open")
        await log_in(api, name="Pavel")
        queue = await (await api.client.get("/admin/alerts")).text()
        assert f'data-alert="{alert.id}"' in queue
        page = f"/admin/alerts/{alert.id}"
        assert "Никто не перезвонил" in await (await api.client.get(page)).text()
        taken = await submit(api, page, f"{page}/take")
        assert taken.headers["Location"] == f"{page}?done=take"
        await submit(api, page, f"{page}/note", text="Calling her back today")
        # No bot and no SMTP in this process: the reply is refused and nothing recorded.
        refused = await submit(api, page, f"{page}/reply", text="Sorry!")
        assert refused.status == 409
        view = await api.services.alerts.get(alert.id)
        assert view.owner == "Pavel"
        assert view.status == "in_progress"
        assert [note["text"] for note in view.notes] == ["Calling her back today"]
        await submit(api, page, f"{page}/resolve", text="Refunded")
        assert (await api.services.alerts.get(alert.id)).status == "resolved"
        assert f'data-alert="{alert.id}"' not in await (
            await api.client.get("/admin/alerts")).text()
        resolved = await (await api.client.get("/admin/alerts?status=resolved")).text()
        assert f'data-alert="{alert.id}"' in resolved
        assert "Take it" not in await (await api.client.get(page)).text()
        audit = await (await api.client.get("/admin/audit")).text()
        assert "alert.take" in audit
        assert "alert.resolve" in audit


async def test_the_overview_shows_the_apis_figures(db_url: str) -> None:
    async with serving(db_url) as api:
        for n, score in enumerate((10, 9, 9, 7, 3, 0)):
            await answer_nps(api, n, score)
        await log_in(api)
        page = await (await api.client.get("/admin/?days=30")).text()
        status, figures = await api.get("/api/v1/metrics?survey=nps&from=2026-02-01&to=2026-03-02")
        assert status == 200
        nps = figures["overall"]["nps"]
        assert (nps["promoters"], nps["passives"], nps["detractors"]) == (3, 1, 2)
        card = page[page.index('data-survey="nps"'):]
        card = card[card.index('data-metric="nps"'):]
        assert f'<div class="figure">{nps["score"]:+.1f}</div>' in card
        assert "6 answers" in card
        assert "<svg" in page  # the weekly trend


async def test_a_surveys_page_filters_comments_by_the_dialogues_score(db_url: str) -> None:
    async with serving(db_url) as api:
        await answer_nps(api, 1, 2, "Ждал оператора сорок минут")
        await answer_nps(api, 2, 10, "Всё быстро, спасибо")
        await log_in(api)
        page = await (await api.client.get("/admin/surveys/nps")).text()
        assert "Ждал оператора" in page
        assert "Всё быстро" in page
        detractors = await (await api.client.get("/admin/surveys/nps?score=0-6")).text()
        assert "Ждал оператора" in detractors
        assert "Всё быстро" not in detractors
        found = await (await api.client.get("/admin/surveys/nps?q=БЫСТРО")).text()
        assert "Всё быстро" in found
        assert "Ждал оператора" not in found
        assert (await api.client.get("/admin/surveys/nope")).status == 404


async def test_the_pages_show_known_figures_and_count_the_anonymous_beside(db_url: str) -> None:
    async with serving(db_url) as api:
        for n, score in enumerate((10, 9, 3)):
            await answer_nps(api, n, score, f"known customer {n}")
        for n in range(2):  # visitors of /w/nps
            visitor = Who("web", f"visitor-dashboard-{n}")
            await api.services.surveys.begin(visitor, "nps")
            await api.services.surveys.reply(visitor, Reply.typed("0"))
            await api.services.surveys.reply(visitor, Reply.typed(f"visitor gripe {n}"))
        await log_in(api)
        overview = await (await api.client.get("/admin/?days=30")).text()
        card = overview[overview.index('data-survey="nps"'):]
        assert "+ 2 anonymous answers, not in them" in card
        card = card[card.index('data-metric="nps"'):]
        assert '<div class="figure">+33.3</div>' in card  # (2 - 1) / 3: the known three
        assert "3 answers" in card

        page = await (await api.client.get("/admin/surveys/nps?days=30")).text()
        assert "+ 2 anonymous answers, not in them" in page
        assert "known customer 2" in page
        assert "visitor gripe" not in page
