"""README.md's first tour, played as written against the web app: the demo answered as a
customer, the dashboard as the team, the README's own trigger (its JSON body read from the
README), its link answered, each answer and alert where the tour says it shows."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.dashboard_support import log_in
from tests.e2e.test_web_pages import choose, page, submit
from tests.e2e.trigger_support import Api, serving

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url) as api:
        yield api


def readme_trigger() -> dict[str, object]:
    tour = README.read_text(encoding="utf-8").split("## A first tour", 1)[1]
    found = re.search(r"-d '(\{.*?\})'", tour, re.S)
    assert found, "the tour's curl sends no JSON body"
    body: dict[str, object] = json.loads(found[1])
    return body


async def open_alerts(api: Api) -> list[tuple[str, int | None]]:
    """The alerts the dashboard's queue lists as open (its page and the API read them
    alike)."""
    status, body = await api.get("/api/v1/alerts?status=open")
    assert status == 200, body
    return sorted((alert["survey"], alert["score"]) for alert in body["alerts"])


async def test_the_readme_tour_runs_as_written(api: Api) -> None:
    # 1. The demo at the root, answered 3 with a word on why.
    root = await api.client.get("/", allow_redirects=False)
    demo = root.headers["Location"]
    assert await choose(api, demo, "3") == 303
    _, html, _ = await page(api, demo)
    assert (await submit(api, demo, html, text="Slow delivery"))[0] == 200

    # 2. The dashboard: signed in with the token, the answer counted apart as anonymous,
    # the alert raised.
    assert (await log_in(api)).status == 303
    overview = await (await api.client.get("/admin/")).text()
    assert "+ 1 anonymous answer, not in them" in overview
    assert await open_alerts(api) == [("nps", 3)]

    # 3. The README's trigger, as it is written there: a link, nothing sent.
    status, body = await api.post("/api/v1/triggers", readme_trigger())
    assert (status, body["status"]) == (202, "sent"), body
    link = str(body["survey_url"]).removeprefix(api.services.links.base_url)

    # 4. Its link answered: the call with Oleg rated 1, what went wrong said.
    _, html, _ = await page(api, link)
    assert "How would you rate your call with Oleg?" in html
    assert await choose(api, link, "1") == 303
    assert await choose(api, link, "Long wait") == 303
    _, html, _ = await page(api, link)
    assert (await submit(api, link, html, text="Twenty minutes on hold"))[0] == 200
    csat = await (await api.client.get("/admin/surveys/post_call_csat")).text()
    assert "Twenty minutes on hold" in csat
    assert await open_alerts(api) == [("nps", 3), ("post_call_csat", 1)]
    by_agent = await api.get("/api/v1/metrics?survey=post_call_csat&group_by=context.agent_name")
    assert by_agent[0] == 200
    assert [group["key"] for group in by_agent[1]["groups"]] == ["Oleg"]
