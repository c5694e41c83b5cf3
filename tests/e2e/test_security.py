"""The security review's findings, each as a test over real HTTP on loopback (SQLite: none
of this depends on the database): secrets compared in constant time, tokens from `secrets`
and scoped, signed triggers against replay, Telegram's webhook secret, CSRF on every form,
CORS on the widget only, the headers of every page, body size limits, limits on failed
attempts at a secret, SQL built by SQLAlchemy only, and no secret in the logs.
(Every state-changing route needing credentials is test_route_auth.py; personal data out
of the logs of a whole flow is test_observability.py.)"""

from __future__ import annotations

import ast
import asyncio
import hmac
import io
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from bot.bootstrap import CHANNELS
from bot.keys import SETTINGS
from bot.settings import Settings
from bot.signing import signature
from handlers.api.core import MAX_BODY
from handlers.api.throttle import client_address
from storage.models import DeliveryRow
from testkit.botapi import BotApiStub
from tests.e2e.dashboard_support import csrf_of, log_in
from tests.e2e.telegram_support import Product, running
from tests.e2e.test_observability import logs_to
from tests.e2e.test_route_auth import concrete
from tests.e2e.test_web_pages import CSRF, ORIGIN, answers, delivery, form_of, page, submit
from tests.e2e.trigger_support import ADMIN, SECRET, TOKEN, Api, serving, trigger

ROOT = Path(__file__).resolve().parents[2]
API_TOKEN = "api-token-of-an-integration"
WEBHOOK_SECRET = "webhook-secret-for-tests"
ANNA = 1001
TOO_BIG = b"x" * (MAX_BODY + 1024)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"


@asynccontextmanager
async def site(url: str, **overrides: Any) -> AsyncIterator[Api]:
    """`serving` with an integration's API token and the widget's origin."""
    values: dict[str, Any] = {"api_tokens": [API_TOKEN], "widget_origins": [ORIGIN],
                              **overrides}
    async with serving(url, **values) as api:
        yield api


@asynccontextmanager
async def with_webhook(url: str, **overrides: Any
                       ) -> AsyncIterator[tuple[Product, TestClient[Any, Any]]]:
    """The product's web app in webhook mode, as `otklik run` serves it, and a Bot API
    stand-in."""
    async with BotApiStub() as stub, running(
            url, stub, webhook_url="https://example.org/telegram/webhook",
            webhook_secret=WEBHOOK_SECRET, admin_token=ADMIN, api_tokens=[API_TOKEN],
            **overrides) as product:
        app = product.built.web  # webhook_url is set: Telegram's route is on it
        async with TestClient(TestServer(app)) as client:
            yield product, client


async def post_update(client: TestClient[Any, Any], update: dict[str, Any],
                      secret: str | None) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    response = await client.post("/telegram/webhook", json=update, headers=headers)
    return response.status


async def raw_status(client: TestClient[Any, Any], head: bytes) -> int:
    """The status of a request sent as these bytes: headers that are not UTF-8, which no
    client library will send."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return status


# -- secrets compared in constant time --------------------------------------------------------


class Comparisons:
    """hmac.compare_digest, recording what it was given."""

    def __init__(self) -> None:
        self.real = hmac.compare_digest
        self.pairs: list[set[bytes]] = []

    def __call__(self, a: Any, b: Any) -> bool:
        self.pairs.append({x if isinstance(x, bytes) else str(x).encode() for x in (a, b)})
        return self.real(a, b)

    def compared(self, presented: str, secret: str) -> bool:
        return {presented.encode(), secret.encode()} in self.pairs


async def test_every_presented_secret_is_compared_with_compare_digest(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    comparisons = Comparisons()
    monkeypatch.setattr(hmac, "compare_digest", comparisons)
    monkeypatch.setattr(secrets, "compare_digest", comparisons)
    async with with_webhook(url, trigger_secret=SECRET, failed_attempts=100) as (_, client):
        wrong = "w" * 24
        checked: list[tuple[str, int, str, str]] = []

        response = await client.post("/api/v1/triggers", json=trigger(),
                                     headers={"Authorization": f"Bearer {wrong}"})
        checked.append(("an API token", response.status, wrong, API_TOKEN))
        response = await client.get("/api/v1/answers",
                                    headers={"Authorization": f"Bearer {wrong}"})
        checked.append(("ADMIN_TOKEN on the API", response.status, wrong, ADMIN))

        stamp, raw = str(int(time.time())), json.dumps(trigger()).encode()
        forged = signature(b"guess", stamp, raw)
        response = await client.post("/api/v1/triggers", data=raw, headers={
            "Content-Type": "application/json", "X-Otklik-Timestamp": stamp,
            "X-Otklik-Signature": forged})
        checked.append(("a trigger's signature", response.status, forged,
                        signature(SECRET.encode(), stamp, raw)))

        response = await client.get("/w/nps")
        cookie = response.cookies["otklik_csrf"].value
        response = await client.post("/w/nps", data={"csrf": wrong, "session": "1",
                                                      "position": "1", "answer": "9"})
        checked.append(("a survey form's CSRF token", response.status, wrong, cookie))

        login = await client.get("/admin/login")
        csrf = CSRF.search(await login.text())
        assert csrf
        response = await client.post("/admin/login", data={
            "csrf": csrf[1], "name": "Olga", "token": wrong})
        checked.append(("the dashboard's password", response.status, wrong, ADMIN))

        response = await client.post("/telegram/webhook", json={"update_id": 1},
                                     headers={"X-Telegram-Bot-Api-Secret-Token": wrong})
        checked.append(("Telegram's webhook secret", response.status, wrong, WEBHOOK_SECRET))

        for what, status, presented, secret in checked:
            assert status in (401, 403), what
            assert comparisons.compared(presented, secret), f"{what}: not compare_digest"

        comparisons.pairs.clear()  # a session cookie: itsdangerous checks its signature so
        forged_session = URLSafeTimedSerializer("guess", salt="otklik-dashboard")
        client.session.cookie_jar.update_cookies({
            "otklik_admin": forged_session.dumps({"who": "Olga"})})
        assert (await client.get("/admin/", allow_redirects=False)).status == 303
        assert comparisons.pairs


SECRET_NAME = re.compile(r"token|secret|signature|csrf|password", re.IGNORECASE)
# In SQL: a delivery found by its token through the unique index. The database's B-tree
# search is no timing oracle worth having over 192 random bits.
SQL_LOOKUPS = {"DeliveryRow.token == bindparam('k_token')"}


def product_sources() -> Iterator[tuple[Path, ast.Module]]:
    for folder in ("bot", "handlers", "storage"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def equality_on_secrets(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            operands = [node.left, *node.comparators]
            if any(SECRET_NAME.search(ast.unparse(o)) for o in operands) and \
                    ast.unparse(node) not in SQL_LOOKUPS:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_secret_is_compared_with_equals() -> None:
    assert equality_on_secrets(ast.parse("ok = presented == settings.admin_token")) != []
    found = [f"{path.relative_to(ROOT)}:{line}" for path, tree in product_sources()
             for line in equality_on_secrets(tree)]
    assert found == []


# -- tokens: unguessable and scoped -----------------------------------------------------------


async def test_every_token_handed_out_comes_from_secrets_with_128_bits_or_more(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[int, str]] = []
    real = secrets.token_urlsafe

    def recorded(nbytes: int | None = None) -> str:
        token = real(nbytes)
        made.append((nbytes or 32, token))
        return token

    monkeypatch.setattr(secrets, "token_urlsafe", recorded)
    async with site(url) as api:
        first, second = await delivery(api, "k1"), await delivery(api, "k2", external_id="c2")
        cookies = {c.key: c.value for c in (await api.client.get("/w/nps")).cookies.values()}
        status, state, _ = await widget_start(api)
    assert status == 200
    assert cookies.keys() == {"otklik_csrf", "otklik_visitor"}
    handed_out = {first, second, state["visitor"], *cookies.values()}
    assert first != second
    assert handed_out <= {token for _, token in made}
    assert all(nbytes * 8 >= 128 for nbytes, _ in made), made


async def widget_start(api: Api, visitor: str | None = None
                       ) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = await api.client.post("/api/v1/widget/nps/start", json={"visitor": visitor},
                                     headers={"Origin": ORIGIN})
    return response.status, await response.json(), dict(response.headers)


async def test_a_token_opens_its_own_delivery_and_nothing_else(url: str) -> None:
    async with site(url) as api:
        mine = await delivery(api, "k1")
        theirs = await delivery(api, "k2", external_id="c2", telegram_id=5)
        _, their_page, _ = await page(api, f"/s/{theirs}")
        _, my_page, _ = await page(api, f"/s/{mine}")
        # Their dialogue's id in my page's form: the answer goes nowhere.
        code, _, _ = await submit(api, f"/s/{mine}", my_page, answer="0",
                                  session=form_of(their_page)["session"])
        assert code == 303
        assert await answers(api) == []

        for route in ("/api/v1/answers", "/api/v1/deliveries", "/api/v1/customers?q=crm-42"):
            status, _ = await api.get(route, token=mine)
            assert status == 401, route
        assert (await api.client.get("/admin/", headers={"Authorization": f"Bearer {mine}"},
                                     allow_redirects=False)).status == 303

        # The widget's visitor id is the pop-up's token: another visitor's dialogue is not
        # answered with it.
        _, anna, _ = await widget_start(api)
        _, boris, _ = await widget_start(api)
        response = await api.client.post("/api/v1/widget/nps/answer", headers={
            "Origin": ORIGIN}, json={"visitor": boris["visitor"],
                                     "session_id": anna["session_id"], "position": 1,
                                     "picked": [0]})
        assert response.status == 200
        assert await answers(api) == []


async def test_an_api_token_posts_triggers_and_nothing_more(url: str) -> None:
    async with site(url) as api:
        status, _ = await api.post("/api/v1/triggers", trigger(), token=API_TOKEN)
        assert status == 202
        for route in ("/api/v1/answers", "/api/v1/customers?q=crm-42", "/api/v1/audit",
                      "/metrics"):
            response = await api.client.get(route, headers={
                "Authorization": f"Bearer {API_TOKEN}"})
            assert response.status == 403, route
            assert (await response.json())["error"]["field"] == "Authorization", route
        response = await log_in(api, token=API_TOKEN)
        assert response.status == 401
        assert "otklik_admin" not in response.cookies


async def test_the_dashboard_session_is_no_credential_for_the_api(url: str) -> None:
    """The API reads only the Authorization header: a page elsewhere cannot make a logged-in
    browser call it (the cookie is sent explicitly here: the browser would not even send it
    outside /admin)."""
    async with site(url) as api:
        response = await log_in(api)
        session = response.cookies["otklik_admin"].value
        assert (await api.client.get("/admin/")).status == 200
        for method, route in (("GET", "/api/v1/answers"), ("POST", "/api/v1/triggers"),
                              ("DELETE", "/api/v1/customers/crm-42")):
            answer = await api.client.request(method, route, json=trigger(), headers={
                "Cookie": f"otklik_admin={session}"})
            assert answer.status == 401, route


# -- signed triggers --------------------------------------------------------------------------


async def test_a_signed_trigger_replayed_in_its_window_schedules_nothing_more(url: str) -> None:
    async with site(url) as api:
        stamp, raw = str(int(time.time())), json.dumps(trigger()).encode()
        headers = {"Content-Type": "application/json", "X-Otklik-Timestamp": stamp,
                   "X-Otklik-Signature": signature(SECRET.encode(), stamp, raw)}
        first = await api.client.post("/api/v1/triggers", data=raw, headers=headers)
        again = await api.client.post("/api/v1/triggers", data=raw, headers=headers)
        # The idempotency key is inside the signed body: a replay is the first answer.
        assert (first.status, again.status) == (202, 200)
        assert (await first.json())["delivery_id"] == (await again.json())["delivery_id"]
        assert len(await api.deliveries()) == 1

        restamped = await api.client.post("/api/v1/triggers", data=raw, headers={
            **headers, "X-Otklik-Timestamp": str(int(stamp) + 1)})
        assert restamped.status == 401
        assert (await restamped.json())["error"]["code"] == "bad_signature"
        for stamp_header in ({}, {"X-Otklik-Timestamp": "soon"}):
            unstamped = {k: v for k, v in headers.items() if k != "X-Otklik-Timestamp"}
            response = await api.client.post("/api/v1/triggers", data=raw,
                                             headers={**unstamped, **stamp_header})
            assert response.status == 401
            assert (await response.json())["error"]["field"] == "X-Otklik-Timestamp"
        assert await api.trigger_count() == 1


# -- Telegram's webhook -----------------------------------------------------------------------


async def test_the_webhook_refuses_any_other_secret_and_handles_nothing(url: str) -> None:
    async with with_webhook(url) as (product, client):
        start = product.api.message_update(ANNA, "/start")
        for secret in (None, "", "wrong", WEBHOOK_SECRET + "x", "секрет-вебхука-для-тестов"):
            assert await post_update(client, start, secret) == 401, secret
        head = b"POST /telegram/webhook HTTP/1.1\r\nContent-Length: 0\r\n"
        assert await raw_status(client, head + b"X-Telegram-Bot-Api-Secret-Token: \xff\xfe") \
            == 401
        assert product.api.sent(ANNA) == []
        assert await post_update(client, start, WEBHOOK_SECRET) == 200
        assert product.api.sent(ANNA) != []


async def test_credentials_that_are_not_utf8_are_refused_not_a_server_error(url: str) -> None:
    async with site(url) as api:
        stamp = str(int(time.time())).encode()
        for head in (b"GET /api/v1/answers HTTP/1.1\r\nAuthorization: Bearer \xff\xfe",
                     b"GET /api/v1/deliveries HTTP/1.1\r\nAuthorization: Bearer \xff\xfe",
                     b"POST /api/v1/triggers HTTP/1.1\r\nContent-Length: 0\r\n"
                     b"X-Otklik-Timestamp: " + stamp + b"\r\nX-Otklik-Signature: \xff\xfe"):
            assert await raw_status(api.client, head) == 401, head


# -- CSRF -------------------------------------------------------------------------------------


async def test_every_form_post_needs_the_csrf_token(url: str) -> None:
    """Every POST outside the API (the dashboard's forms, the login, the survey pages), sent
    by a logged-in browser without the form's CSRF token or with a forged one: 403, and
    nothing happened (the session is still there, the audit log is unchanged)."""
    async with site(url) as api:
        await log_in(api)
        app = api.client.app
        assert app is not None
        # A platform's webhook carries its secret, not a form's token (test_route_auth).
        webhooks = {path for plugin in CHANNELS for path in plugin.webhooks}
        secret_paths = tuple(path for plugin in CHANNELS for path in plugin.secret_paths)
        forms = sorted({route.resource.canonical for route in app.router.routes()
                        if route.method == "POST" and route.resource is not None
                        and not route.resource.canonical.startswith(
                            ("/api/", "/telegram/", *secret_paths))
                        and route.resource.canonical not in webhooks})
        assert len(forms) >= 10
        _, audit = await api.get("/api/v1/audit")
        for path in forms:
            for fields in ({}, {"csrf": "forged-" + "0" * 36}):
                response = await api.client.post(concrete(path), data={
                    **fields, "name": "Olga", "token": ADMIN, "session": "1", "position": "1",
                    "answer": "1", "text": "hi", "source": "id: x"}, allow_redirects=False)
                assert response.status == 403, (path, fields)
                assert "otklik_admin" not in response.cookies, path
        assert (await api.client.get("/admin/", allow_redirects=False)).status == 200
        assert (await api.get("/api/v1/audit"))[1] == audit


# -- CORS -------------------------------------------------------------------------------------


async def test_only_the_widget_api_answers_allowed_origins(url: str) -> None:
    async with site(url) as api:
        app = api.client.app
        assert app is not None
        gets = sorted({route.resource.canonical for route in app.router.routes()
                       if route.method == "GET" and route.resource is not None})
        for path in gets:
            response = await api.client.get(concrete(path), headers={
                "Origin": ORIGIN, "Authorization": f"Bearer {ADMIN}"}, allow_redirects=False)
            assert "Access-Control-Allow-Origin" not in response.headers, path
        for path, origin, allowed in (("/api/v1/triggers", ORIGIN, False),
                                      ("/api/v1/answers", ORIGIN, False),
                                      ("/api/v1/widget/nps/start", "https://evil.example", False),
                                      ("/api/v1/widget/nps/start", ORIGIN, True)):
            preflight = await api.client.options(path, headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})
            assert ("Access-Control-Allow-Origin" in preflight.headers) == allowed, path
            assert (preflight.status == 204) == allowed, (path, preflight.status)
        status, _ = await api.post("/api/v1/triggers", trigger(), headers={"Origin": ORIGIN})
        assert status == 202  # an integration's request, whatever its Origin: no CORS


# -- headers and cookies of pages -------------------------------------------------------------


def assert_protected(what: str, headers: Any) -> None:
    csp = {directive.split()[0]: directive.split()[1:]
           for directive in headers.get("Content-Security-Policy", "").split(";")
           if directive.strip()}
    assert csp.get("script-src") == ["'self'"], (what, csp)
    assert csp.get("style-src") == ["'self'"], (what, csp)
    assert csp.get("frame-ancestors") == ["'none'"], (what, csp)
    assert csp.get("default-src") == ["'self'"], (what, csp)
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "no-referrer", what


NOT_PAGES = ("/api/", "/static", "/widget.js", "/healthz", "/openapi.json", "/metrics",
             "/favicon.ico")


async def test_every_page_and_error_page_carries_the_security_headers(url: str) -> None:
    async with site(url) as api:
        mine = await delivery(api, "k1")
        await log_in(api)
        app = api.client.app
        assert app is not None
        pages = sorted({route.resource.canonical for route in app.router.routes()
                        if route.method == "GET" and route.resource is not None
                        and not route.resource.canonical.startswith(NOT_PAGES)})
        values = {"token": mine, "survey": "nps", "score": "9", "alert": "1",
                  "external_id": "crm-42"}
        seen: set[int] = set()
        for path in pages:
            concrete_path = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)
            response = await api.client.get(concrete_path, allow_redirects=False)
            assert_protected(path, response.headers)
            seen.add(response.status)
        errors = [await api.client.get(path) for path in (
            "/s/not-a-token", "/w/no_such_survey", "/no/such/page", "/e/nope/9")]
        errors += [await api.client.post(f"/s/{mine}", data=TOO_BIG, headers={
            "Content-Type": "application/x-www-form-urlencoded"}),
            await api.client.get("/admin/logout")]
        # A score link of a delivery answered already redirects (303) to its page.
        _, first, _ = await page(api, f"/s/{mine}")
        await submit(api, f"/s/{mine}", first, answer="9")
        errors.append(await api.client.get(f"/e/{mine}/9", allow_redirects=False))
        for response in errors:
            assert_protected(response.url.path, response.headers)
            seen.add(response.status)
        assert {200, 303, 404, 405, 410, 413} <= seen


async def test_cookies_are_httponly_samesite_and_secure_on_an_https_site(url: str) -> None:
    for public_url, secure in (("https://feedback.example.com", True),
                               ("http://localhost:8080", False)):
        async with site(url, public_url=public_url) as api:
            token = await delivery(api, f"k-{secure}")
            set_cookies = [(await api.client.get(path)).headers.getall("Set-Cookie", [])
                           for path in ("/admin/login", "/w/nps", f"/s/{token}")]
            csrf = CSRF.search(await (await api.client.get("/admin/login")).text())
            assert csrf
            login = await api.client.post("/admin/login", allow_redirects=False, data={
                "csrf": csrf[1], "name": "Olga", "token": ADMIN},
                headers={"Cookie": f"otklik_csrf={csrf[1]}"})
            assert login.status == 303
            cookies = [c for each in set_cookies for c in each] + login.headers.getall(
                "Set-Cookie")
            names = {c.split("=", 1)[0] for c in cookies}
            assert names == {"otklik_csrf", "otklik_visitor", "otklik_admin"}
            for cookie in cookies:
                assert "HttpOnly" in cookie, cookie
                assert re.search(r"SameSite=(Strict|Lax)", cookie), cookie
                assert ("Secure" in cookie) == secure, cookie
            session = next(c for c in cookies if c.startswith("otklik_admin="))
            assert "SameSite=Strict" in session


# -- sizes ------------------------------------------------------------------------------------


async def test_bodies_over_the_limit_are_refused_with_413(url: str) -> None:
    async with site(url) as api:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for method, path, headers in (
                ("PUT", "/api/v1/surveys/big", {**admin, "Content-Type": "application/yaml"}),
                ("POST", "/api/v1/widget/nps/answer", {"Origin": ORIGIN,
                                                       "Content-Type": "application/json"}),
                ("POST", "/api/v1/alerts/1/notes", {**admin,
                                                    "Content-Type": "application/json"})):
            response = await api.client.request(method, path, data=TOO_BIG, headers=headers)
            assert response.status == 413, path
            assert (await response.json())["error"]["code"] == "too_large", path
        await log_in(api)
        form = aiohttp.FormData()
        form.add_field("csrf", await csrf_of(api, "/admin/scripts"))
        form.add_field("file", TOO_BIG, filename="big.yaml")
        response = await api.client.post("/admin/scripts", data=form)
        assert response.status == 413
        assert_protected("/admin/scripts", response.headers)
        assert "big" not in [row.survey_id for row, _ in await api.services.admin.surveys()]


# -- limits on guessing -----------------------------------------------------------------------


def request_from(peer: str, forwarded: str | None, proxies: list[str]) -> web.Request:
    app = web.Application()
    app[SETTINGS] = Settings(_env_file=None, trusted_proxies=proxies)
    transport = Mock()
    transport.get_extra_info.return_value = (peer, 50000)  # what request.remote reads
    return make_mocked_request("GET", "/", app=app, transport=transport, headers={
        "X-Forwarded-For": forwarded} if forwarded else {})


@pytest.mark.parametrize(("peer", "forwarded", "proxies", "client"), [
    ("203.0.113.5", None, [], "203.0.113.5"),
    ("203.0.113.5", "198.51.100.1", [], "203.0.113.5"),  # not from a proxy: ignored
    ("10.0.0.2", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
    ("10.0.0.2", "1.2.3.4, 198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),  # 1.2.3.4: forged
    ("10.0.0.2", "198.51.100.1, 10.0.0.7", ["10.0.0.0/8"], "198.51.100.1"),  # two proxies
    ("10.0.0.2", None, ["10.0.0.0/8"], "10.0.0.2"),
])
def test_the_client_address_is_the_proxys_word_only_for_trusted_proxies(
        peer: str, forwarded: str | None, proxies: list[str], client: str) -> None:
    assert client_address(request_from(peer, forwarded, proxies)) == client


async def test_wrong_secrets_from_one_address_are_cut_off(url: str) -> None:
    async with site(url, failed_attempts=3, trusted_proxies=["127.0.0.1"]) as api:
        mine = await delivery(api, "k1")
        csrf = await csrf_of(api, "/admin/login")

        async def login(client: str, token: str) -> int:
            response = await api.client.post("/admin/login", data={
                "csrf": csrf, "name": "Olga", "token": token}, allow_redirects=False,
                headers={"X-Forwarded-For": client})
            return response.status

        guesser = "203.0.113.5"
        assert [await login(guesser, f"guess-{n}") for n in range(3)] == [401] * 3
        assert await login(guesser, ADMIN) == 429  # right or wrong: no more tries for now
        response = await api.client.get("/api/v1/answers", headers={
            "X-Forwarded-For": guesser, "Authorization": f"Bearer {ADMIN}"})
        assert response.status == 429  # the API's token is the same secret: the same budget
        assert (await response.json())["error"]["code"] == "rate_limited"
        assert await login(f"1.2.3.4, {guesser}", ADMIN) == 429  # the forged hop is ignored
        assert (await api.client.get(f"/s/{mine}", headers={
            "X-Forwarded-For": guesser})).status == 429
        # Nothing that presents no secret is held back; everyone else logs in.
        assert (await api.client.get("/admin/login", headers={
            "X-Forwarded-For": guesser})).status == 200
        assert await login("198.51.100.7", ADMIN) == 303

        # Unknown survey links count; a link that is known but closed does not.
        async with api.services.factory() as session:
            await session.execute(update(DeliveryRow).values(status="expired"))
            await session.commit()
        customer = {"X-Forwarded-For": "198.51.100.20"}
        for _ in range(4):
            assert (await api.client.get(f"/s/{mine}", headers=customer)).status == 410
        scanner = {"X-Forwarded-For": "198.51.100.30"}
        statuses = [(await api.client.get(path, headers=scanner)).status
                    for path in ("/s/guess-1", "/e/guess-2/9", "/s/guess-3", f"/s/{mine}")]
        assert statuses == [410, 410, 410, 429]
        response = await api.client.post("/u/guess-4", headers=scanner,
                                         data={"List-Unsubscribe": "One-Click"})
        assert response.status == 429


# -- SQL --------------------------------------------------------------------------------------


# Where SQL is text on purpose, made of constants only: the migrations' advisory lock (its
# id is a module constant) and SQLite's BEGIN or BEGIN IMMEDIATE. (SQLite's PRAGMAs, a
# tuple of constants, are run by name through the DB-API cursor, which the check allows.)
RAW_SQL_ALLOWED = {
    ("storage/migrations/env.py",
     "connection.exec_driver_sql(f'SELECT pg_advisory_xact_lock({MIGRATION_LOCK})')"),
    ("storage/db.py", "connection.exec_driver_sql(begin)"),
    # VACUUM takes no parameters; the names are the erasure's own tables, quoted.
    ("storage/db.py", "autocommit.exec_driver_sql(f'VACUUM {names}')"),
}
RAW = {"text", "literal_column"}  # SQLAlchemy's: their argument is SQL as it stands
RUNS = {"execute", "executemany", "executescript"}  # their argument may be a statement


def _built(node: ast.expr) -> bool:
    """A string made at run time: an f-string, `%` or `+`, or str.format."""
    return (isinstance(node, ast.JoinedStr)
            or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add))
            or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"))


def raw_sql(tree: ast.AST) -> list[str]:
    """Calls that take SQL text (sqlalchemy.text, literal_column, exec_driver_sql) with
    anything but a literal, and calls that run a statement given as a string built at run
    time."""
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    functions = {alias.asname or alias.name for node in imports
                 if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                     "sqlalchemy") for alias in node.names if alias.name in RAW}
    modules = {alias.asname or alias.name for node in imports if isinstance(node, ast.Import)
               for alias in node.names if alias.name.startswith("sqlalchemy")}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func, sql = node.func, node.args[0]
        takes_text = (isinstance(func, ast.Name) and func.id in functions) or (
            isinstance(func, ast.Attribute) and (func.attr == "exec_driver_sql" or (
                func.attr in RAW and isinstance(func.value, ast.Name)
                and func.value.id in modules)))
        runs = isinstance(func, ast.Attribute) and func.attr in RUNS
        literal = isinstance(sql, ast.Constant) and isinstance(sql.value, str)
        if (takes_text and not literal) or (runs and _built(sql)):
            found.append(ast.unparse(node))
    return found


def test_sql_is_built_by_sqlalchemy_only() -> None:
    for bad in ('from sqlalchemy import text\nconn.execute(text(f"SELECT {x}"))',
                'import sqlalchemy as sa\nsession.execute(sa.text(query))',
                'cursor.execute("DELETE FROM t WHERE id = %s" % x)',
                "conn.exec_driver_sql('SELECT ' + x)", "op.execute('DROP {}'.format(x))"):
        assert raw_sql(ast.parse(bad)), bad
    assert not raw_sql(ast.parse('from sqlalchemy import text\nconn.execute(text("SELECT 1"))'))
    found = {(str(path.relative_to(ROOT)), call) for path, tree in product_sources()
             for call in raw_sql(tree)}
    assert found == RAW_SQL_ALLOWED


# -- logs -------------------------------------------------------------------------------------


async def test_no_secret_of_webhook_mode_the_dashboard_or_the_api_is_logged(url: str) -> None:
    """The secrets test_observability's flow does not use: Telegram's webhook secret, an
    integration's API token, the dashboard's password, session and CSRF cookies; the flow
    at DEBUG, refused attempts included."""
    stream = io.StringIO()
    async with with_webhook(url, log_level="DEBUG", log_format="json") as (product, client):
        with logs_to(stream, product.settings):
            start = product.api.message_update(ANNA, "/start")
            assert await post_update(client, start, "wrong-" + WEBHOOK_SECRET) == 401
            assert await post_update(client, start, WEBHOOK_SECRET) == 200
            for token, expected in ((API_TOKEN[::-1], 401), (API_TOKEN, 202)):
                response = await client.post("/api/v1/triggers", json=trigger(), headers={
                    "Authorization": f"Bearer {token}"})
                assert response.status == expected
            login = await client.get("/admin/login")
            csrf = CSRF.search(await login.text())
            assert csrf
            for token, expected in ((ADMIN[::-1], 401), (ADMIN, 200)):
                response = await client.post("/admin/login", data={
                    "csrf": csrf[1], "name": "Olga", "token": token})
                assert response.status == expected
            session = next(c.value for c in client.session.cookie_jar
                           if c.key == "otklik_admin")
            async with product.factory() as db_session:
                link = (await db_session.scalars(select(DeliveryRow.token))).one()
            assert link is not None
            assert (await client.get(f"/s/{link}")).status == 200
    logged = stream.getvalue()
    assert "Update id=" in logged  # the capture saw the flow
    for secret in (WEBHOOK_SECRET, API_TOKEN, API_TOKEN[::-1], ADMIN, ADMIN[::-1], session,
                   csrf[1], link, TOKEN.split(":")[1]):
        assert secret not in logged, f"{secret!r} in the logs"
