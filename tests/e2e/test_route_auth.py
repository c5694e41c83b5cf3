"""Every route that changes state is authenticated: the API's with a token (401 without
one), the dashboard's with a session (sent to the login page without one), a channel's
webhook with its platform's secret (in a header, or in its path where the platform signs
nothing), and the public ones with what a customer holds
instead. A new state-changing route fails this test until
it is put in one of these groups."""

from __future__ import annotations

import re

import pytest

from bot.bootstrap import CHANNELS
from tests.e2e.trigger_support import serving

pytestmark = pytest.mark.asyncio

# Public on purpose, and what authorises each instead of a login.
PUBLIC = {
    ("POST", "/s/{token}"): "the delivery's unguessable token and the form's CSRF token",
    ("POST", "/e/{token}/{score}"): "the delivery's unguessable token and the form's CSRF token",
    ("POST", "/u/{token}"): "the delivery's unguessable token",
    ("POST", "/w/{survey}"): "an anonymous survey: the CSRF token, a rate limit per address",
    ("POST", "/api/v1/widget/{survey}/start"): "the pop-up: allowed origins, a rate limit",
    ("POST", "/api/v1/widget/{survey}/answer"): "the pop-up: allowed origins, a rate limit",
    ("POST", "/admin/login"): "the login itself: ADMIN_TOKEN in the form, the CSRF token",
}
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}",
                  lambda m: "take" if m.group(1) == "action" else "1", path)


async def test_every_state_changing_route_needs_credentials(db_url: str) -> None:
    async with serving(db_url) as api:
        app = api.client.app
        assert app is not None
        routes = {(route.method, route.resource.canonical)
                  for route in app.router.routes()
                  if route.method in CHANGES and route.resource is not None}
        assert set(PUBLIC) <= routes, "a public route listed here is gone"
        checked = 0
        webhooks = {path: header for plugin in CHANNELS for path in plugin.webhooks
                    for header in plugin.credentials}
        secret_paths = tuple(prefix for plugin in CHANNELS for prefix in plugin.secret_paths)
        for method, path in sorted(routes - set(PUBLIC)):
            url = concrete(path)
            if path in webhooks:  # a platform's: its secret, not a login
                response = await api.client.request(method, url, data=b"{}")
                assert response.status == 401, (method, path, response.status)
                assert (await response.json())["error"]["field"] == webhooks[path]
            elif path.startswith(secret_paths):  # a platform's secret in the path (SMSC)
                response = await api.client.request(method, url, data=b"{}")
                assert response.status == 401, (method, path, response.status)
            elif path.startswith("/api/"):
                response = await api.client.request(method, url, json={})
                assert response.status == 401, (method, path, response.status)
                body = await response.json()
                assert body["error"]["field"] == "Authorization", (method, path)
            else:
                assert path.startswith("/admin/"), f"{method} {path}: who may call it?"
                response = await api.client.request(method, url, data={},
                                                    allow_redirects=False)
                assert response.status == 303, (method, path, response.status)
                assert response.headers["Location"].startswith("/admin/login"), (method, path)
            checked += 1
        assert checked >= 15  # the listing found the API and the dashboard (17 routes now)
