"""A logged-in dashboard visitor over the loopback server of trigger_support: forms are
posted with the page's CSRF token, as a browser would."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import ClientResponse

from tests.e2e.trigger_support import ADMIN, Api

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# A script with one error: NPS has no scale (line 8, steps.0.scale).
BROKEN = """id: broken
default_locale: en
title: {en: Broken}
steps:
  - id: score
    type: nps
    text: {en: "How likely?"}
    scale: 12
"""


async def csrf_of(api: Api, path: str) -> str:
    response = await api.client.get(path)
    found = CSRF.search(await response.text())
    assert found, f"no CSRF token on {path}"
    return found.group(1)


async def log_in(api: Api, name: str = "Olga", token: str = ADMIN) -> ClientResponse:
    csrf = await csrf_of(api, "/admin/login")
    return await api.client.post("/admin/login", data={
        "csrf": csrf, "name": name, "token": token, "next": "/admin/"}, allow_redirects=False)


async def submit(api: Api, page: str, action: str, **fields: Any) -> ClientResponse:
    """Post a form found on `page` to `action`, with that page's CSRF token."""
    csrf = await csrf_of(api, page)
    return await api.client.post(action, data={"csrf": csrf, **fields}, allow_redirects=False)
