"""Faults the product must survive, met as users meet them: `otklik run` in a process of its
own (long polling, the scheduler, the HTTP server) against the loopback Bot API, or its web
app on a loopback server.

- The database out of reach for 10 s: on SQLite another connection holds the write lock
  (BEGIN EXCLUSIVE), on PostgreSQL a proxy between the product and the server drops every
  connection and refuses new ones (the server itself is shared with other tests).
- The Bot API answering 429s, 500s, nothing at all (a dropped connection, as a timeout
  looks) and slowly, for 10 s.
- A full disk on SQLite: the product's connection may not grow the file (max_page_count).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import make_url, select

from handlers.telegram import app as telegram
from storage.db import create_engine
from storage.models import AnswerRow, DialogueRow
from testkit.botapi import BotApiStub, iter_buttons
from testkit.net import free_port
from testkit.proxy import Proxy
from tests.e2e.telegram_support import WEBHOOK_SECRET, in_webhook_mode, webhook
from tests.e2e.test_dispatch_processes import FIRST_CHAT, due_deliveries, start, statuses
from tests.e2e.test_web_pages import answers, delivery, page, submit
from tests.e2e.trigger_support import ADMIN, Api, serving, trigger

OUTAGE = 10.0  # seconds a fault lasts: the database outage (its minute of Bot API
# failures is scaled down to this too)
JSON = dict[str, Any]
NPS_QUESTION = "How likely are you to recommend us to a friend or colleague, 0-10?"
FOLLOW_UP = "What is the main reason for your score?"


@dataclass
class Running:
    """An `otklik run` process: where it serves, and (once it has stopped) what it logged."""

    url: str
    log: str = ""


@asynccontextmanager
async def otklik(db_url: str, api: BotApiStub, cwd: Path, **env: str) -> AsyncIterator[Running]:
    """`otklik run` with Telegram by long polling; stopped with SIGTERM at the end."""
    port = free_port()
    process = start(db_url, api, cwd, HTTP_PORT=str(port), WEBHOOK_URL="", WEBHOOK_SECRET="",
                    ADMIN_TOKEN=ADMIN, **env)
    assert process.stdout is not None
    # Read as it comes: a full pipe would stop the process at its next log line.
    output = asyncio.ensure_future(asyncio.to_thread(process.stdout.read))
    running = Running(f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        running.log = await output
        assert await asyncio.to_thread(process.wait, 30) == 0, running.log


def chat(customer: int) -> int:
    return FIRST_CHAT + customer


def texts(api: BotApiStub, chat_id: int) -> list[str]:
    """What the bot sent to the chat, the first line of each message."""
    return [params["text"].split("\n")[0] for params in api.sent(chat_id)]


def tap(api: BotApiStub, chat_id: int, label: str) -> JSON:
    """A tap on the button `label` of the bot's latest message in the chat."""
    message = api.messages(chat_id)[-1]
    [data] = [b["callback_data"] for b in iter_buttons(message) if b["text"] == label]
    return api.callback_update(chat_id, data, message["message_id"])


async def scores(db_url: str) -> list[tuple[int, str, int | None]]:
    """Every stored answer: the customer's number, the step and the score."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(DialogueRow.customer_id, AnswerRow.step_id, AnswerRow.score)
                .join(DialogueRow, DialogueRow.id == AnswerRow.session_id).order_by(AnswerRow.id))
            return [(customer, step, score) for customer, step, score in rows]
    finally:
        await engine.dispose()


# -- the database out of reach -------------------------------------------------------------


@asynccontextmanager
async def reachable(db_url: str) -> AsyncIterator[tuple[str, Callable[[],
                                                       AbstractAsyncContextManager[None]]]]:
    """The URL the product should use, and `away()`: the database out of reach for the
    product (and only for it) while the block runs."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        @asynccontextmanager
        async def locked() -> AsyncIterator[None]:
            lock = sqlite3.connect(str(url.database), timeout=10, isolation_level=None,
                                   check_same_thread=False)
            try:
                await asyncio.to_thread(lock.execute, "BEGIN EXCLUSIVE")
                yield
            finally:
                lock.close()  # rolls back: the lock is gone

        yield db_url, locked
        return
    async with Proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        @asynccontextmanager
        async def cut() -> AsyncIterator[None]:
            await proxy.cut()
            try:
                yield
            finally:
                await proxy.restore()

        yield url.set(port=proxy.port).render_as_string(hide_password=False), cut


async def post_trigger(http: aiohttp.ClientSession) -> aiohttp.ClientResponse:
    return await http.post("/api/v1/triggers", json=trigger(),
                           headers={"Authorization": f"Bearer {ADMIN}"})


async def test_a_database_outage_of_10s_loses_nothing(db_url: str, tmp_path: Path) -> None:
    """Three customers: TAPS answers the first question during the outage, SENDING's survey
    is on its way to Telegram when the outage begins (its outcome is written during it),
    and DUE's falls due during it. Meanwhile HTTP answers 503 with Retry-After (the outage
    lasts until those answers came: on SQLite a write waits for the lock first)."""
    taps, sending, due = 101, 102, 103  # above the ids the product gives new customers
    await due_deliveries(db_url, 2, first=taps)
    loop = asyncio.get_running_loop()
    async with BotApiStub() as api, reachable(db_url) as (product_url, away):
        api.delay("sendMessage", 3.0, chat_id=chat(sending))  # Telegram takes it at once
        async with otklik(product_url, api, tmp_path) as product, aiohttp.ClientSession(
                product.url) as http:
            await api.wait_sent(chat(taps), 1, timeout=60)
            await api.wait_sent(chat(sending), 1)
            await due_deliveries(db_url, 1, first=due, due_in=timedelta(seconds=2))
            async with away():
                began = loop.time()
                await api.push_update(tap(api, chat(taps), "9"))
                api_call, page_call, widget_call = await asyncio.gather(
                    post_trigger(http),
                    http.get("/w/nps", headers={"Accept-Language": "ru-RU,ru;q=0.9"}),
                    http.post("/api/v1/widget/nps/start", json={}))
                await asyncio.sleep(max(0.0, began + OUTAGE - loop.time()))
            for response in (api_call, widget_call):
                assert response.status == 503, await response.text()
                assert response.headers["Retry-After"] == "10"
                assert (await response.json())["error"]["code"] == "database_unavailable"
            assert (page_call.status, page_call.headers["Retry-After"]) == (503, "10")
            assert "База данных ненадолго недоступна" in await page_call.text()

            await api.wait_for(lambda: texts(api, chat(taps))[1:] == [FOLLOW_UP]
                               and len(api.sent(chat(due))) == 1, timeout=30)
            response = await post_trigger(http)
            assert response.status == 202, await response.text()  # the pool came back
            await asyncio.sleep(0.5)  # time for a second send, were there one
        assert texts(api, chat(taps)) == [NPS_QUESTION, FOLLOW_UP]
        assert texts(api, chat(sending)) == [NPS_QUESTION]
        assert texts(api, chat(due)) == [NPS_QUESTION]
    assert await scores(db_url) == [(taps, "score", 9)]
    # The send under way is recorded as sent, not left in `sending` to go out again after
    # SENDING_TIMEOUT; the trigger posted after the outage is scheduled.
    assert await statuses(db_url) == Counter({"answered": 1, "sent": 2, "scheduled": 1})
    # A warning when the update and the send's outcome began to wait, one per 503, and
    # nothing each tick while the dispatcher waited for that outcome.
    assert product.log.count("waits for the database") == 2, product.log
    assert product.log.count(": 503, the database is unavailable") == 3, product.log
    assert "maximum number of running instances" not in product.log
    assert "Traceback" not in product.log
    assert " ERROR " not in product.log


async def test_a_webhook_update_that_finds_the_database_away_is_sent_again(
        tmp_path: Path) -> None:
    """In webhook mode the update waits for the database only briefly, then the webhook
    answers 503 and Telegram sends it again: taken once, and the dialogue goes on."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"
    anna = 1001
    async with BotApiStub() as api, reachable(db_url) as (_, away), in_webhook_mode(
            db_url, api) as product, webhook(product) as url:
        start = api.message_update(anna, "/start")
        assert await api.post_webhook(url, start, WEBHOOK_SECRET) == 200
        update = tap(api, anna, "9")
        async with away():
            assert await api.post_webhook(url, update, WEBHOOK_SECRET) == 503
        assert await api.post_webhook(url, update, WEBHOOK_SECRET) == 200
        assert texts(api, anna) == [NPS_QUESTION, FOLLOW_UP]
        assert await product.answers() == [("score", 9, None, None)]


async def test_a_webhook_update_whose_reply_telegram_refuses_is_sent_again(
        tmp_path: Path) -> None:
    """A reply Telegram refuses past the bot's patience (here a bot that tries once) fails
    the webhook's request instead of ending in an apology nobody receives: Telegram sends
    the update again, the answer is taken once and the next question is shown."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"
    anna = 1002
    async with BotApiStub() as api, in_webhook_mode(db_url, api) as product:
        impatient = telegram.build_bot(product.settings,
                                       product.built.services.surveys.mark_unreachable,
                                       retry=False)
        try:
            async with webhook(product, impatient) as url:
                start = api.message_update(anna, "/start")
                assert await api.post_webhook(url, start, WEBHOOK_SECRET) == 200
                update = tap(api, anna, "9")
                api.fail("sendMessage", status=500, chat_id=anna)
                assert await api.post_webhook(url, update, WEBHOOK_SECRET) == 500
                assert await api.post_webhook(url, update, WEBHOOK_SECRET) == 200
        finally:
            await impatient.session.close()
        assert texts(api, anna) == [NPS_QUESTION, FOLLOW_UP]
        assert await product.answers() == [("score", 9, None, None)]


# -- the Bot API failing ---------------------------------------------------------------------


async def flaky(api: BotApiStub, seconds: float) -> None:
    """For `seconds`, every Bot API call (getUpdates too) meets one fault after another, a
    second each: 429 with retry_after, 500, no answer at all, a slow answer."""
    faults: list[Callable[[], None]] = [
        lambda: api.fail("*", status=429, retry_after=1, times=None),
        lambda: api.fail("*", status=500, times=None),
        lambda: api.drop("*", times=None),
        lambda: api.delay("*", 1.5, times=None)]
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        for turn in range(int(seconds)):
            api.clear_faults()
            faults[turn % len(faults)]()
            await asyncio.sleep(max(0.0, min(1.0, end - loop.time())))
    finally:
        api.clear_faults()


async def test_the_bot_api_failing_for_10s_loses_nothing(tmp_path: Path) -> None:
    """Issue 8 asks for a minute of failures: 10 s here, with the dispatcher's backoff
    scaled down to match (RETRY_BACKOFF 0.2 s, doubling). Three customers answer their
    first question meanwhile and three more surveys fall due; afterwards each survey went
    out once, each answer is stored once and each customer got the next question.

    A timeout here is a request Telegram never took (dropped unanswered): one it took
    whose answer was lost can't be told from it, and would be sent again, since the Bot
    API has no idempotency key. SQLite only: the database plays no part in this."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}"
    answering, due = (101, 102, 103), (201, 202, 203)
    await due_deliveries(db_url, len(answering), first=answering[0])
    async with BotApiStub() as api:
        async with otklik(db_url, api, tmp_path, RETRY_BACKOFF="0.2", SEND_ATTEMPTS="30"):
            await api.wait_for(lambda: all(api.sent(chat(n)) for n in answering),
                               timeout=60)
            window = asyncio.ensure_future(flaky(api, OUTAGE))
            await due_deliveries(db_url, len(due), first=due[0])
            for customer, score in zip(answering, ("9", "3", "10"), strict=True):
                await api.push_update(tap(api, chat(customer), score))
            await window
            await api.wait_for(lambda: all(len(api.sent(chat(n))) == 2 for n in answering)
                               and all(api.sent(chat(n)) for n in due), timeout=60)
            await asyncio.sleep(0.5)  # time for a second send, were there one
        failed = Counter(call.error.split(":")[0] for call in api.calls_of("sendMessage")
                         if call.error)
        for customer in answering:
            assert texts(api, chat(customer)) == [NPS_QUESTION, FOLLOW_UP]
        for customer in due:
            assert texts(api, chat(customer)) == [NPS_QUESTION]
    assert {"Too Many Requests", "Internal Server Error", "dropped"} <= set(failed), failed
    assert sorted(await scores(db_url)) == [(101, "score", 9), (102, "score", 3),
                                            (103, "score", 10)]
    assert await statuses(db_url) == Counter({"answered": 3, "sent": 3})


# -- a full disk -------------------------------------------------------------------------------


async def max_pages(api: Api, pages: int | None = None) -> None:
    """How far the product's one SQLite connection may grow the file: `pages`, or no
    further than now. A write past it fails as on a full disk: "database or disk is full"."""
    async with api.engine.connect() as connection:
        if pages is None:
            pages = (await connection.exec_driver_sql("PRAGMA page_count")).scalar_one()
        await connection.exec_driver_sql(f"PRAGMA max_page_count = {pages}")


async def test_a_full_disk_is_reported_and_harms_nothing_stored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A customer's answer and a trigger while SQLite's disk is full: 507 and one ERROR line
    each, naming the file; what was stored stays whole, and once there is space again the
    same answer goes in."""
    path = tmp_path / "otklik.db"
    async with serving(f"sqlite+aiosqlite:///{path}") as api:
        token = await delivery(api)
        _, html, _ = await page(api, f"/s/{token}")
        assert (await submit(api, f"/s/{token}", html, answer="9"))[0] == 303
        _, html, _ = await page(api, f"/s/{token}")  # the follow-up question
        reason = "Долго ждал ответа. " * 100  # long enough to need new pages
        big = {**trigger("big"), "context": {"note": "x" * 20_000}}
        await max_pages(api)
        caplog.set_level(logging.WARNING)

        status, _, body = await submit(api, f"/s/{token}", html, text=reason)
        assert status == 507
        assert "Our storage is full. Please try again later." in body
        status, error = await api.post("/api/v1/triggers", big)
        assert (status, error["error"]["code"]) == (507, "storage_full")

        logged = [(r.levelname, r.getMessage()) for r in caplog.records
                  if r.name.startswith(("handlers", "bot", "storage"))]
        assert logged == [
            ("ERROR", f"the database disk is full ({path}): POST /s/{{token}} refused with 507"),
            ("ERROR", f"the database disk is full ({path}): POST /api/v1/triggers refused "
                      "with 507")]
        assert not any(record.exc_info for record in caplog.records)
        assert "Долго ждал" not in caplog.text  # the answer stays out of the log
        async with api.engine.connect() as connection:
            check = await connection.exec_driver_sql("PRAGMA integrity_check")
            assert check.scalars().all() == ["ok"]
        assert await answers(api) == [("score", 9, None)]

        await max_pages(api, 1_073_741_823)  # SQLite's default: space again
        assert (await submit(api, f"/s/{token}", html, text=reason))[0] == 200  # thanks
        assert (await api.post("/api/v1/triggers", big))[0] == 202
        assert await answers(api) == [("score", 9, None), ("reason", None, reason.strip())]
