"""The dashboard at HTTP level: login with ADMIN_TOKEN, the signed session cookie, CSRF on
every form, and the pages' content against the database."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.dashboard_support import csrf_of, log_in
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
