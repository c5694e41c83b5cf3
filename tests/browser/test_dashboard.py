"""The dashboard in a real headless Chromium, as a CX manager uses it on a laptop: log in,
read the NPS card (the same figure as the metrics API), resolve an alert, and upload a
broken script to see its line and field. The overview is saved as a screenshot in
tests/artifacts/ (and for the README in docs/ with OTKLIK_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect

from tests.browser.conftest import Visitor
from tests.e2e.admin_support import answer_nps
from tests.e2e.dashboard_support import BROKEN
from tests.e2e.trigger_support import ADMIN, NOON, Api, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the browser's loop (conftest)

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"

@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: tests/e2e/test_dashboard.py runs the same pages over PostgreSQL."""
    return f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"


@pytest_asyncio.fixture(loop_scope="module")
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(db_url) as api:
        yield api


def url(api: Api, path: str) -> str:
    return str(api.client.make_url(path))


async def test_a_manager_reads_nps_resolves_an_alert_and_fixes_a_script(
        api: Api, desktop: Visitor) -> None:
    # A week of answers before today (the services' clock), one a detractor's with a reason.
    for n, (score, days) in enumerate(((10, 20), (9, 15), (9, 9), (8, 8), (10, 3), (7, 2))):
        api.clock.now = NOON - timedelta(days=days)
        await answer_nps(api, n, score, first_name="Anna")
    api.clock.now = NOON
    await answer_nps(api, 9, 3, "Никто не перезвонил", first_name="Olga")
    [alert] = await api.services.alerts.queue(status="open")

    page = await desktop.open(url(api, "/admin/"))
    await expect(page).to_have_url(url(api, "/admin/login?next=%2Fadmin%2F"))
    await page.get_by_label("Your name").fill("Marina")
    await page.get_by_label("Admin token").fill(ADMIN)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(url(api, "/admin/"))

    start = (NOON - timedelta(days=89)).date().isoformat()
    status, figures = await api.get(f"/api/v1/metrics?survey=nps&from={start}&to=2026-03-02")
    assert status == 200
    score = figures["overall"]["nps"]["score"]
    card = page.locator('[data-survey="nps"] [data-metric="nps"] .figure')
    await expect(card).to_have_text(f"{score:+.1f}")
    await desktop.shoot(page, "overview")
    if os.environ.get("OTKLIK_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=DOCS_SCREENSHOT, full_page=True)

    await page.get_by_role("link", name="Alerts").click()
    await page.get_by_role("link", name=f"#{alert.id}").click()
    await expect(page.get_by_text("Никто не перезвонил")).to_be_visible()
    await page.get_by_role("button", name="Resolve").click()
    await expect(page.locator("#alert-status")).to_have_text("resolved")
    assert (await api.services.alerts.get(alert.id)).status == "resolved"
    await desktop.shoot(page, "alert-resolved")

    assert desktop.errors == []  # no CSP violation, no failed request

    await page.get_by_role("link", name="Scripts").click()
    await page.get_by_label("…or paste it here").fill(BROKEN)
    await page.get_by_role("button", name="Validate and store").click()
    await expect(page.locator("#script-errors")).to_contain_text("pasted.yaml:8: steps.0.scale")
    await desktop.shoot(page, "broken-script")
    # the refusal is a 422 page, which Chromium reports on the console; nothing else
    assert [error for error in desktop.errors if "422" not in error] == []
