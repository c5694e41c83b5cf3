"""A real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright: no browser
downloads) and the people using it: phone-sized or desktop contexts that record their
pages' console errors (a CSP violation is one) and keep full-page screenshots in
tests/artifacts/."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

CHROMIUM = Path(os.environ.get("OTKLIK_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# The test machine may have no internet: without these, Chromium keeps calling Google.
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs it: missing there is a broken build, not a skip
        pytest.skip(reason)
    return CHROMIUM


# One browser for the module (Playwright's driver and Chromium take ~2 s to start); every
# test gets fresh contexts. Tests and fixtures run on the module's event loop with it.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Visitor:
    """One person's browser (a context: cookies and storage of its own), every console
    error of the pages it opened, and its screenshots, numbered in the order taken."""

    def __init__(self, context: BrowserContext, name: str) -> None:
        self.context, self.name = context, name
        self.errors: list[str] = []
        self._shots = 0

    async def open(self, url: str) -> Page:
        page = await self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"{error}"))
        await page.goto(url)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        # Chromium asks every site for /favicon.ico; ours has none and needs none
        if message.type == "error" and not where.endswith("/favicon.ico"):
            self.errors.append(f"{message.text} ({where})")

    async def shoot(self, page: Page, step: str) -> Path:
        self._shots += 1
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{self._shots}-{step}.png"
        await page.screenshot(path=path, full_page=True)
        return path


@asynccontextmanager
async def visiting(browser: Browser, name: str, *, phone: bool = True,
                   javascript: bool = True) -> AsyncIterator[Visitor]:
    """A phone (390×844, touch) or a laptop without touch; English first."""
    if phone:
        context = await browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
            has_touch=True, locale="en-US", java_script_enabled=javascript)
    else:
        context = await browser.new_context(viewport={"width": 1024, "height": 768},
                                            locale="en-US", java_script_enabled=javascript)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield Visitor(context, name)
    finally:
        await context.close()


def artifact_name(request: pytest.FixtureRequest) -> str:
    test: str = request.node.originalname
    return re.sub(r"[^A-Za-z0-9]+", "-", test.removeprefix("test_")).strip("-")


@pytest_asyncio.fixture(loop_scope="module")
async def phone(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Visitor]:
    async with visiting(browser, artifact_name(request)) as visitor:
        yield visitor


@pytest_asyncio.fixture(loop_scope="module")
async def phone_without_js(browser: Browser, request: pytest.FixtureRequest
                           ) -> AsyncIterator[Visitor]:
    async with visiting(browser, artifact_name(request), javascript=False) as visitor:
        yield visitor


@pytest_asyncio.fixture(loop_scope="module")
async def desktop(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Visitor]:
    """A laptop without a touch screen, for the customer who uses the keyboard alone."""
    async with visiting(browser, artifact_name(request), phone=False) as visitor:
        yield visitor
