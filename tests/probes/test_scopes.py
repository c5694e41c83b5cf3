"""Each credential does its job and no more (issue 16, part h), over HTTP on SQLite and
PostgreSQL: an integration token (API_TOKENS) posts triggers and gets 403, never 401, on
every other route of the API, so an integration that calls the wrong route never locks its
address out; the audit log names who acted (token:crm, admin, signature, dashboard:<name>)
and never holds a secret, nor do the logs; campaign runs and logins are audited; logging
out ends that session on the server while the user's other sessions go on."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from aiohttp import ClientResponse
from pydantic import ValidationError
from sqlalchemy import select

from bot.settings import Settings
from storage.models import AuditRow, TriggerRow
from tests.e2e.dashboard_support import csrf_of, log_in
from tests.e2e.test_observability import logs_to
from tests.e2e.test_route_auth import concrete
from tests.e2e.trigger_support import ADMIN, SECRET, Api, serving, trigger

CRM, PBX = "crm-secret-0f3a9c51d2e84b7a", "pbx-secret-77b1e0c4a9d35f26"
TOKENS = f"crm:{CRM},pbx:{PBX}"
# The integration's routes (README, Security), and the widget's, which take no credential.
INTEGRATION = {("POST", "/api/v1/triggers")}
ANYONE = {(method, f"/api/v1/widget/{{survey}}/{step}")
          for method in ("POST", "OPTIONS") for step in ("start", "answer")}
CAMPAIGN = {"name": "quarterly", "survey": "nps", "schedule": "0 11 1 * *"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_routes(api: Api) -> set[tuple[str, str]]:
    app = api.client.app
    assert app is not None
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
            and (route.resource.canonical.startswith("/api/")
                 or route.resource.canonical == "/metrics")}


async def audit(api: Api) -> list[AuditRow]:
    """The audit log after the example scripts were stored (as "tests")."""
    async with api.services.factory() as session:
        return list(await session.scalars(select(AuditRow).where(
            AuditRow.actor != "tests").order_by(AuditRow.id)))


async def status_of(response: ClientResponse) -> tuple[int, str | None]:
    body = await response.json() if response.content_type == "application/json" else {}
    return response.status, body.get("error", {}).get("field")


async def test_an_integration_token_gets_403_on_every_route_but_the_triggers(
        db_url: str) -> None:
    async with serving(db_url, api_tokens=TOKENS) as api:
        routes = api_routes(api)
        assert routes >= INTEGRATION | ANYONE
        admin_routes = sorted(routes - INTEGRATION - ANYONE)
        assert len(admin_routes) >= 25  # surveys, campaigns, deliveries, answers, ...
        for method, path in admin_routes:
            response = await api.client.request(method, concrete(path), json={},
                                                headers=bearer(CRM))
            assert await status_of(response) == (403, "Authorization"), (method, path)
            # The admin token still reaches it: the 403 is the token's scope, not the route.
            response = await api.client.request(method, concrete(path), json={},
                                                headers=bearer(ADMIN))
            assert response.status not in (401, 403), (method, path)
        for token in (CRM, PBX, ADMIN):
            status, _ = await api.post("/api/v1/triggers", trigger(f"k-{token}"), token=token)
            assert status == 202, token
        status, _ = await api.signed("/api/v1/triggers", trigger("k-signed"))
        assert status == 202


async def test_refusals_of_a_right_token_never_lock_its_address_out(db_url: str) -> None:
    async with serving(db_url, api_tokens=TOKENS, failed_attempts=3) as api:
        for n in range(20):
            response = await api.client.get("/api/v1/deliveries", headers=bearer(CRM))
            assert response.status == 403, n
        status, _ = await api.post("/api/v1/triggers", trigger("after-20"), token=CRM)
        assert status == 202
        # Wrong tokens still count: three, and the address waits, right token or not.
        for guess in ("guess-1", "guess-2", "guess-3"):
            status, _ = await api.post("/api/v1/triggers", trigger("guessed"), token=guess)
            assert status == 401
        status, body = await api.post("/api/v1/triggers", trigger("locked"), token=CRM)
        assert (status, body["error"]["code"]) == (429, "rate_limited")


async def test_the_audit_log_names_who_acted_and_holds_no_secret(db_url: str) -> None:
    stream = io.StringIO()
    async with serving(db_url, api_tokens=TOKENS, log_level="DEBUG") as api:
        with logs_to(stream, api.settings):
            assert (await api.client.get("/api/v1/answers", headers=bearer(CRM))).status == 403
            status, _ = await api.post("/api/v1/triggers", trigger("by-crm"), token=CRM)
            assert status == 202
            status, _ = await api.signed("/api/v1/triggers", trigger("signed", external_id="c2"))
            assert status == 202
            status, _ = await api.get("/api/v1/customers/crm-42/export")
            assert status == 200
            assert (await log_in(api, "Olga", token=CRM)).status == 401
            assert (await log_in(api, "Olga")).status == 303
        rows = await audit(api)
        async with api.services.factory() as session:
            sources = list(await session.scalars(
                select(TriggerRow.source).order_by(TriggerRow.id)))
    assert [(row.actor, row.action, row.target) for row in rows] == [
        ("token:crm", "api.forbidden", "GET /api/v1/answers"),
        ("admin", "customer.exported", "crm-42"),
        ("dashboard:Olga", "dashboard.login_refused", "dashboard"),
        ("dashboard:Olga", "dashboard.login", "dashboard")]
    assert rows[2].details["reason"] == "wrong token"
    assert sources == ["token:crm", "signature"]
    stored = json.dumps([[r.actor, r.action, r.target, r.details] for r in rows])
    logged = stream.getvalue()
    assert "token:crm refused on GET /api/v1/answers" in logged  # the capture saw the flow
    for secret in (CRM, PBX, ADMIN, SECRET):
        assert secret not in stored, secret
        assert secret not in logged, secret


async def test_campaign_runs_and_creation_are_audited_with_who_started_them(
        db_url: str) -> None:
    async with serving(db_url, api_tokens=TOKENS) as api:
        status, created = await api.post("/api/v1/campaigns", CAMPAIGN)
        assert status == 201
        for _ in range(2):  # twice in one minute: one run, audited once
            status, run = await api.post(f"/api/v1/campaigns/{created['id']}/run", {})
            assert (status, run["status"]) == (200, "done")
        # The scheduler's job calls run with the campaign's id alone.
        await api.services.campaigns.run(created["id"], at=api.clock.advance(hours=1))
        rows = await audit(api)
    assert [(row.actor, row.action, row.target) for row in rows] == [
        ("admin", "campaign.saved", "campaign:quarterly"),
        ("admin", "campaign.run", "campaign:quarterly"),
        ("scheduler", "campaign.run", "campaign:quarterly")]
    assert rows[1].details["run_id"] == run["run_id"]


async def test_logging_out_ends_that_session_on_the_server_only(db_url: str) -> None:
    async with serving(db_url) as api:
        jar = api.client.session.cookie_jar

        async def logged_in_as(name: str) -> str:
            jar.clear()
            assert (await log_in(api, name)).status == 303
            return next(c.value for c in jar if c.key == "otklik_admin")

        def use(session: str) -> None:
            jar.clear()
            jar.update_cookies({"otklik_admin": session})

        async def overview(session: str) -> ClientResponse:
            use(session)
            return await api.client.get("/admin/", allow_redirects=False)

        laptop, phone = await logged_in_as("Olga"), await logged_in_as("Olga")
        assert laptop != phone
        assert (await overview(laptop)).status == 200
        assert (await overview(phone)).status == 200

        use(laptop)
        csrf = await csrf_of(api, "/admin/")
        response = await api.client.post("/admin/logout", data={"csrf": csrf},
                                         allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/admin/login")

        # The laptop's cookie, kept or copied before the logout, now leads to the login.
        refused = await overview(laptop)
        assert refused.status == 303
        assert refused.headers["Location"].startswith("/admin/login")
        use(laptop)
        page = await api.client.get("/admin/alerts")
        assert page.url.path == "/admin/login"
        assert 'name="token"' in await page.text()
        assert (await overview(phone)).status == 200
        rows = await audit(api)
    assert [(row.actor, row.action) for row in rows][-1] == ("dashboard:Olga",
                                                             "dashboard.logout")


def test_api_tokens_are_named_and_a_bad_list_is_a_clear_error() -> None:
    def tokens(value: Any) -> dict[str, str]:
        settings = Settings(_env_file=None, api_tokens=value)
        return {name: t.get_secret_value() for name, t in settings.api_tokens.items()}

    assert tokens(f"crm:{CRM}, bare-one ,pbx:{PBX},bare-two,") == {
        "crm": CRM, "api-1": "bare-one", "pbx": PBX, "api-2": "bare-two"}
    for value, message in ((f"CRM:{CRM}", "item 1: a name is 1-40 of a-z"),
                           (f"crm:{CRM},crm:{PBX}", "item 2: the name crm is taken"),
                           ("bare,api-1:other", "item 2: the name api-1 is taken"),
                           ("crm:", "item 1 (crm): no secret after the name"),
                           (f"crm:{CRM},pbx:{CRM}", "two tokens have the same secret")):
        with pytest.raises(ValidationError) as caught:
            tokens(value)
        assert message in str(caught.value), value
        assert CRM not in str(caught.value)
    with pytest.raises(ValidationError, match="API_TOKENS holds ADMIN_TOKEN") as caught:
        Settings(_env_file=None, admin_token=CRM, api_tokens=f"crm:{CRM}")
    assert CRM not in str(caught.value)
