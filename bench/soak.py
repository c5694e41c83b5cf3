"""Soak: the whole product as `otklik run` runs it (a child process in webhook mode, on
SQLite and on PostgreSQL) under a steady load of simulated customers for --seconds, checked
for what must never happen at the end.

The bench process plays everyone the product talks to, on loopback: the Bot API stub
(testkit/botapi.py) that posts customers' updates to the product's webhook, a real
SMTP server (aiosmtpd) that receives its e-mails, the help desk that POSTs signed triggers,
and --customers customers. Surveys start at a steady --rate per second (a ticket each, taken
by whichever idle customer waits first): a Telegram customer's ticket fires a trigger and
the customer answers the 0-10 question with a button and the "why?" with a typed message; an
e-mail customer's fires an e-mailed trigger, the customer's mail gateway fetches another
score link of the message (which must store nothing), and the customer clicks the score,
types the "why?" under it on the page it opens and sends both; a web customer opens the
anonymous survey page and answers both in forms. Each customer is new each time (a new chat,
address or visitor) and thinks for a random --think seconds before each answer. A request
that fails (the product restarting) is sent again, as Telegram resends an update and a
person reloads; when the resent one is the last answer and finds the survey over (the first
try was taken, and its closing words died with it), that is counted, not an error.

With --api-faults S, Telegram refuses every message the product sends for S seconds from 30%
of the run (429 with retry_after and 500, two seconds each by turns). With --kills K the
product is killed with SIGKILL K times at random moments and restarted at
once. Every --sample seconds the product's resident memory (VmRSS) and open file
descriptors are read from /proc. At the end (the product stopped) the database is checked:
every answer a customer saw taken is stored exactly once with its value, no dialogue holds
an answer nobody gave, every survey's rollups equal a recount from the raw answers
(MetricsService.compute against from_answers, by day and by channel), and no
delivery reached its customer twice (except where Telegram or the SMTP server took it within
the last moment before a kill, so the product could not record it: at-least-once, as
documented, and each such case is printed).

Reply latency: from an answer sent to the next question seen (the bot's next message; for a
form, the POST and the GET of the page it redirects to). Answers/s: answers stored over the
run. The ratios: surveys started a second to --rate (the load was kept up), answers stored
to answers the customers gave (1.00: none lost, none doubled), memory and descriptors at the
end to after the warm-up (the first fifth of the run; 1.00 = no growth), and p99 latency to
the loopback round trip of a bare aiohttp "hello" measured in the same run. With
--processes N, N processes share the database behind one URL (the README's deployment): each
request goes to any of them, as from a load balancer.

Run: python -m bench.soak [--seconds 300] [--customers 1000] [--rate 20] [--databases
sqlite,postgres] [--kills 0] [--processes 1]   (PostgreSQL from OTKLIK_BENCH_POSTGRES_URL or
OTKLIK_TEST_POSTGRES_URL, a fresh database per run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import itertools
import json
import os
import random
import re
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from bench.dispatch import serve
from bot.services.metrics import MetricsQuery, MetricsService
from handlers.api.core import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import AnswerRow, DeliveryRow, DialogueRow, IdentityRow
from storage.uow import Database
from testkit.botapi import BotApiStub, Call, iter_buttons
from testkit.databases import postgres_database
from testkit.net import free_port

TOKEN = "123456:SOAK-otklik_bot"  # noqa: S105  (the loopback stub's, not a real bot's)
SECRETS = {"WEBHOOK_SECRET": "soak-webhook", "TRIGGER_SECRET": "soak-trigger",
           "ADMIN_TOKEN": "soak-admin"}
SURVEY = "soak"
# The NPS example without its policy: quiet hours and throttling would hold surveys back.
# Open to visitors (anonymous): the web customers answer it on /w/soak.
SCRIPT = """\
id: soak
version: 1
default_locale: en
title: {en: Soak NPS}
timezone: UTC
anonymous: true
steps:
  - id: score
    type: nps
    text: {en: "How likely are you to recommend us, 0-10?"}
  - id: reason
    type: text
    optional: true
    text: {en: "What is the main reason for your score?"}
  - id: thanks
    type: message
    text: {en: "Thank you for your feedback!"}
"""
STEP_TIMEOUT = 120.0  # a reply not seen by then is an error (a restart takes seconds)
RETRY_PAUSE = 0.5
CLOSING_WAIT = 10.0  # for closing words after a resent last answer
EXCUSED = " (the first just before a kill)"
FIRST_CHAT = 7_000_000_000
E_LINK = re.compile(r"/e/([A-Za-z0-9_-]+)/(\d+)")
HIDDEN = re.compile(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"')
FIELD = re.compile(r'name="(?:answer|text)"')  # a question's options or text box
CHOSEN = re.compile(r'name="answer-1" value="(\d+)"[^>]*\bchecked\b')  # an e-mail's score

JSON = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    database: str  # a SQLAlchemy URL
    seconds: float
    customers: int
    rate: float
    think: tuple[float, float]
    kills: int = 0
    processes: int = 1  # behind one URL: each request goes to any of them
    api_faults: float = 0.0  # seconds of Telegram refusing every message (429s and 500s)
    sample: float = 10.0
    seed: int = 1


@dataclass
class Ledger:
    """What the customers did and saw; compared with the database at the end."""

    answered: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    tried: set[tuple[str, str, str, str]] = field(default_factory=set)  # sent, maybe lost
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    surveys: Counter[str] = field(default_factory=Counter)
    # t, process slot, pid, resident kB, open descriptors
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    kills: list[float] = field(default_factory=list)  # the monotonic time of each kill
    faults: tuple[float, float] | None = None  # when Telegram refused every message
    # The last answer, sent again after its first try failed, found the survey closed: it
    # was taken the first time, and the closing words died with that try (a kill between
    # the commit and the reply, or a reply Telegram refused). Stored all the same (checked).
    closings_lost: int = 0
    first_errors: dict[str, str] = field(default_factory=dict)

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        self.first_errors.setdefault(what, detail)

    def trying(self, channel: str, address: str, step: str, value: str) -> None:
        self.tried.add((channel, address, step, value))

    def took(self, channel: str, address: str, step: str, value: str) -> None:
        self.answered.setdefault((channel, address), {})[step] = value


# -- the product ----------------------------------------------------------------------------


class Product:
    """`python -m bot run` as a child process; `kill()` is SIGKILL, `start()` starts it again
    on the same port and database."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=self.env, stdout=out,
                stderr=asyncio.subprocess.STDOUT)
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"otklik run exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"otklik run is not up: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                await self.kill()

    def sample(self) -> tuple[int, int, int] | None:
        """pid, resident kB and open descriptors, or None between a kill and its restart."""
        if self.process is None or self.process.returncode is not None:
            return None
        pid = self.process.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return None
        rss = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:"))
        return pid, rss, fds


def product_env(database: str, port: int, url: str, api: BotApiStub, smtp_port: int,
                surveys: Path) -> dict[str, str]:
    """The settings of one process listening on `port`, all of them behind `url`."""
    return {**os.environ, **SECRETS, "DATABASE_URL": database, "SURVEYS_DIR": str(surveys),
            "DEFAULT_SURVEY": SURVEY, "BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": api.base_url,
            "HTTP_PORT": str(port), "PUBLIC_URL": url, "WEBHOOK_URL": f"{url}/telegram/hook",
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "LOG_LEVEL": "WARNING",
            "DIGEST": "off", "DISPATCH_INTERVAL": "0.2", "TELEGRAM_RATE": "1000",
            # A failed send is retried 5, 10, 20, 40 s later: a minute of refusals is lived
            # through; a send cut by a kill is taken again after 10 s.
            "TELEGRAM_CHAT_RATE": "100", "ANONYMOUS_RATE": "100000000", "RETRY_BACKOFF": "5",
            "SENDING_TIMEOUT": "10", "ADMIN_CHAT_ID": "", "OUTBOUND_WEBHOOK_URL": ""}


# -- the SMTP server ------------------------------------------------------------------------


class Inbox:
    """The SMTP server's handler (it runs in aiosmtpd's thread): each message is handed to
    the waiting customer on the bench's loop; every message's recipient and Message-ID is
    kept, to find a delivery e-mailed twice."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[str, asyncio.Future[EmailMessage]] = {}
        self.received: list[tuple[float, str, str]] = []  # at, recipient, Message-ID

    def expect(self, address: str) -> asyncio.Future[EmailMessage]:
        future = self._loop.create_future()
        self._waiting[address] = future
        return future

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or b"",
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        for address in envelope.rcpt_tos:
            self.received.append((time.monotonic(), address, str(message["Message-ID"])))
            self._loop.call_soon_threadsafe(self._deliver, address, message)
        return "250 Message accepted"

    def _deliver(self, address: str, message: EmailMessage) -> None:
        future = self._waiting.pop(address, None)
        if future is not None and not future.done():
            future.set_result(message)


# -- Telegram -------------------------------------------------------------------------------


class Chats:
    """The time each chat gets its next message from the bot: one future per waiting chat,
    resolved from the stub's record of calls (its own timestamps, so the wake-up is not
    counted)."""

    def __init__(self, api: BotApiStub) -> None:
        self._api = api
        self._seen = 0
        self._waiting: dict[int, asyncio.Future[Call]] = {}

    def expect(self, chat: int) -> asyncio.Future[Call]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[chat] = future
        return future

    async def watch(self) -> None:
        calls = self._api.calls
        while True:
            await self._api.wait_for(lambda: len(calls) > self._seen, timeout=24 * 3600)
            new, self._seen = calls[self._seen:], len(calls)
            for call in new:
                if call.method == "sendMessage" and call.ok:
                    future = self._waiting.pop(call.params["chat_id"], None)
                    if future is not None and not future.done():
                        future.set_result(call)


# -- the customers --------------------------------------------------------------------------


@dataclass
class World:
    config: Config
    products: list[Product]
    api: BotApiStub
    chats: Chats
    inbox: Inbox
    http: aiohttp.ClientSession
    ledger: Ledger
    tickets: asyncio.Queue[None]
    rng: random.Random
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def base(self) -> str:
        """The load balancer: any process, request by request."""
        return self.rng.choice(self.products).url

    async def think(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.config.think))

    async def until(self, what: str, attempt: Callable[[], Awaitable[bool]]) -> int:
        """`attempt` again, RETRY_PAUSE apart, until it says done: a request that met the
        product restarting (refused, cut, a 5xx) is sent again, like Telegram resends an
        update and a person reloads a page. Returns how many tries it took."""
        deadline = time.monotonic() + STEP_TIMEOUT
        tries = 0
        while True:
            tries += 1
            try:
                if await attempt():
                    return tries
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
                detail = repr(error)
            else:
                detail = "not yet"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {detail}")
            await asyncio.sleep(RETRY_PAUSE)

    async def trigger(self, customer: JSON, channel: str) -> None:
        body = json.dumps({"survey": SURVEY, "idempotency_key": secrets.token_hex(8),
                           "customer": customer, "channel": channel, "delay": "PT0S"}).encode()

        async def post() -> bool:
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp,
                       SIGNATURE_HEADER: signature(SECRETS["TRIGGER_SECRET"].encode(), stamp,
                                                   body)}
            async with self.http.post(f"{self.base()}/api/v1/triggers", data=body,
                                      headers=headers) as response:
                if response.status >= 500:
                    return False
                if response.status != 202:
                    raise RuntimeError(f"trigger: {response.status} {await response.text()}")
                return True

        await self.until("trigger", post)


async def seen(future: asyncio.Future[T], what: str) -> T:
    try:
        return await asyncio.wait_for(future, STEP_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(what) from None


async def telegram_customer(w: World, n: int) -> None:
    chat = FIRST_CHAT + n
    question = w.chats.expect(chat)
    await w.trigger({"external_id": f"tg-{n}", "telegram_id": chat, "first_name": "Anna",
                     "locale": "en"}, "telegram")
    sent = await seen(question, f"chat {chat}: no question {STEP_TIMEOUT:g} s after the trigger")
    score = w.rng.randint(0, 10)
    data = next(button["callback_data"] for button in iter_buttons(sent.params)
                if button["text"] == str(score))
    message_id = w.api.messages(chat)[-1]["message_id"]
    await w.think()
    w.ledger.trying("telegram", str(chat), "score", str(score))
    await telegram_step(w, chat, w.api.callback_update(chat, data, message_id))
    w.ledger.took("telegram", str(chat), "score", str(score))
    await w.think()
    reason = f"reason {n}"
    w.ledger.trying("telegram", str(chat), "reason", reason)
    await telegram_step(w, chat, w.api.message_update(chat, reason), last=True)
    w.ledger.took("telegram", str(chat), "reason", reason)


async def telegram_step(w: World, chat: int, update: JSON, *, last: bool = False) -> None:
    """Post the update (again, with the same update_id, while the product cannot take it) and
    wait for the bot's next message: the reply latency."""
    reply = w.chats.expect(chat)
    began = time.monotonic()

    async def post() -> bool:
        status = await w.api.post_webhook(f"{w.base()}/telegram/hook", update,
                                          SECRETS["WEBHOOK_SECRET"])
        if status >= 500:
            return False
        if status != 200:
            raise RuntimeError(f"the webhook answered {status}")
        return True

    if await w.until(f"chat {chat}", post) > 1 and last:
        try:  # the resent update finds the survey over: nothing more is said
            sent = await asyncio.wait_for(asyncio.shield(reply), CLOSING_WAIT)
        except TimeoutError:
            w.ledger.closings_lost += 1
            return
    else:
        sent = await seen(reply, f"chat {chat}: no reply {STEP_TIMEOUT:g} s after an answer")
    w.ledger.latencies.append(sent.at - began)


class Browser:
    """One person's browser: cookies kept (the CSRF cookie, the anonymous visitor's)."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, data: dict[str, str] | None = None
                      ) -> tuple[int, str, str]:
        url = f"{self.w.base()}{re.sub(r'^https?://[^/]+', '', path)}"
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        async with self.w.http.request(method, url, data=data, allow_redirects=False,
                                       headers={"Cookie": cookie} if cookie else {}
                                       ) as response:
            for name, morsel in response.cookies.items():
                self.cookies[name] = morsel.value
            return response.status, response.headers.get("Location", ""), await response.text()

    async def page(self, path: str) -> str:
        """GET a page that must show a question form."""
        body = ""

        async def get() -> bool:
            nonlocal body
            status, _, body = await self.request("GET", path)
            if status >= 500:
                return False
            if status != 200 or not FIELD.search(body):
                raise RuntimeError(f"GET {path}: {status} without a question: {body[:300]}")
            return True

        await self.w.until(f"GET {path}", get)
        return body

    async def answer(self, path: str, page: str, answer: dict[str, str], *,
                     last: bool = False) -> str:
        """POST the page's form with this answer (an option's index as "answer", a typed
        one as "text"); the page it leads to ("" for the thank-you page)."""
        form = dict(HIDDEN.findall(page)) | answer
        began = time.monotonic()
        next_page = ""
        tries = 0

        async def post() -> bool:
            nonlocal next_page, tries
            tries += 1
            status, location, body = await self.request("POST", path, form)
            if status >= 500:
                return False
            if status == 410 and last and tries > 1:  # "closed": taken by the first try
                self.w.ledger.closings_lost += 1
            elif status == 303:
                next_page = await self.page(location)
            elif status == 200 and not FIELD.search(body):
                next_page = ""  # the thank-you page
            else:
                raise RuntimeError(f"POST {path}: {status} {body[:300]}")
            return True

        await self.w.until(f"POST {path}", post)
        self.w.ledger.latencies.append(time.monotonic() - began)
        return next_page


async def email_customer(w: World, n: int) -> None:
    """A score tapped in the e-mail opens the page with it chosen; the reason typed under
    it; Send. Before that the customer's mail gateway fetches another score link of the
    message, as scanners do: an answer stored from it would be one nobody gave."""
    address = f"customer-{n}@soak.example"
    invited = w.inbox.expect(address)
    await w.trigger({"external_id": f"mail-{n}", "email": address, "first_name": "Anna",
                     "locale": "en"}, "email")
    message = await seen(invited, f"{address}: no e-mail {STEP_TIMEOUT:g} s after the trigger")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    links = {int(score): token for token, score in E_LINK.findall(body.get_content())}
    score = w.rng.randint(0, 10)
    scanned = w.rng.choice([other for other in links if other != score])
    scanner = Browser(w)

    async def scan() -> bool:
        for method in ("HEAD", "GET"):
            status, _, text = await scanner.request(method, f"/e/{links[scanned]}/{scanned}")
            if status >= 500:
                return False
            if status != 200:
                raise RuntimeError(f"e-mail link, scanned: {status} {text[:300]}")
        return True

    await w.until(f"scanner of {address}", scan)
    browser = Browser(w)
    path = f"/e/{links[score]}/{score}"
    await w.think()
    began = time.monotonic()
    page = ""

    async def click() -> bool:
        nonlocal page
        status, _, page = await browser.request("GET", path)
        if status >= 500:
            return False
        if status != 200 or CHOSEN.search(page) is None:
            raise RuntimeError(f"e-mail link: {status} without the score chosen: {page[:300]}")
        return True

    await w.until(f"e-mail link of {address}", click)
    w.ledger.latencies.append(time.monotonic() - began)
    chosen, form = CHOSEN.search(page), dict(HIDDEN.findall(page))
    assert chosen is not None
    if chosen[1] != str(score):
        raise RuntimeError(f"e-mail link of {score}: {chosen[1]} chosen")
    reason = f"reason {n}"
    form |= {"answer-1": chosen[1], f"text-{form.get('follow')}": reason}
    await w.think()
    w.ledger.trying("email", address, "score", str(score))
    w.ledger.trying("email", address, "reason", reason)
    began = time.monotonic()
    tries = 0

    async def send() -> bool:
        nonlocal tries
        tries += 1
        status, _, text = await browser.request("POST", path, form)
        if status >= 500:
            return False
        if status == 303 and tries > 1:  # the survey over: taken by the first try
            w.ledger.closings_lost += 1
        elif status != 200 or "Thank you" not in text:
            raise RuntimeError(f"POST {path}: {status} {text[:300]}")
        return True

    await w.until(f"POST {path}", send)
    w.ledger.latencies.append(time.monotonic() - began)
    w.ledger.took("email", address, "score", str(score))
    w.ledger.took("email", address, "reason", reason)


async def web_customer(w: World, n: int) -> None:
    browser = Browser(w)
    path = f"/w/{SURVEY}"
    page = await browser.page(path)
    visitor = browser.cookies.get("otklik_visitor", "")
    score = str(w.rng.randint(0, 10))
    await w.think()
    w.ledger.trying("web", visitor, "score", score)
    page = await browser.answer(path, page, {"answer": score})  # 0-10: index = score
    w.ledger.took("web", visitor, "score", score)
    await w.think()
    reason = f"reason {n}"
    w.ledger.trying("web", visitor, "reason", reason)
    await browser.answer(path, page, {"text": reason}, last=True)
    w.ledger.took("web", visitor, "reason", reason)


Play = Callable[["World", int], Awaitable[None]]
CUSTOMERS: Sequence[tuple[str, Play, float]] = (
    ("telegram", telegram_customer, 0.5), ("email", email_customer, 0.25),
    ("web", web_customer, 0.25))


async def customer(w: World, kind: str, play: Play, deadline: float) -> None:
    """Takes a ticket, answers a survey as a new person, and again, until the deadline."""
    while True:
        await w.tickets.get()
        if time.monotonic() > deadline:
            return
        n = next(w.numbers)
        try:
            await play(w, n)
            w.ledger.surveys[kind] += 1
        except Exception as error:
            w.ledger.error(kind, f"#{n}: {error!r}"[:500])


# -- the run --------------------------------------------------------------------------------


async def tickets(w: World, deadline: float) -> None:
    """`rate` tickets a second, evenly; then one for every customer, to let them all end."""
    began = time.monotonic()
    for k in itertools.count():
        at = began + k / w.config.rate
        if at > deadline:
            break
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        w.tickets.put_nowait(None)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for _ in range(w.config.customers):
        w.tickets.put_nowait(None)


async def sampler(w: World, began: float) -> None:
    while True:
        for slot, product in enumerate(w.products):
            if (sample := product.sample()) is not None:
                w.ledger.samples.append((time.monotonic() - began, slot, *sample))
        await asyncio.sleep(w.config.sample)


async def killer(w: World, began: float) -> None:
    """SIGKILL at random moments of the run's middle, each followed by a restart."""
    moments = sorted(w.rng.uniform(0.15, 0.8) * w.config.seconds for _ in range(w.config.kills))
    for moment in moments:
        await asyncio.sleep(max(0.0, began + moment - time.monotonic()))
        product = w.rng.choice(w.products)
        await product.kill()
        w.ledger.kills.append(time.monotonic())
        await product.start()


async def api_faults(w: World, began: float) -> None:
    """From 30% of the run, for `api_faults` seconds, Telegram refuses every sendMessage:
    429 (retry after 1 s) and 500 by turns, two seconds each."""
    if not w.config.api_faults:
        return
    await asyncio.sleep(max(0.0, began + 0.3 * w.config.seconds - time.monotonic()))
    start = time.monotonic()
    try:
        for status in itertools.cycle((429, 500)):
            if time.monotonic() - start >= w.config.api_faults:
                break
            w.api.clear_faults()
            w.api.fail("sendMessage", status=status, times=None)
            await asyncio.sleep(min(2.0, start + w.config.api_faults - time.monotonic()))
    finally:
        w.api.clear_faults()
        w.ledger.faults = (start, time.monotonic())



@dataclass
class Result:
    config: Config
    ledger: Ledger
    seconds: float
    stored: int
    violations: list[str]
    doubles: list[str]  # deliveries sent twice, each explained by a kill
    hello_p99: float


async def soak(config: Config, workdir: Path) -> Result:
    """One run of the soak on `config.database` (a fresh database); the invariants checked
    after it."""
    surveys = workdir / "surveys"
    surveys.mkdir(parents=True, exist_ok=True)
    (surveys / f"{SURVEY}.yaml").write_text(SCRIPT, encoding="utf-8")
    inbox = Inbox(asyncio.get_running_loop())
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    ledger = Ledger()
    hello_p99 = await hello_round_trip()
    url = config.database
    try:
        async with BotApiStub() as api:
            await upgrade_async(url)
            ports = [free_port() for _ in range(config.processes)]
            products = [Product(product_env(url, port, f"http://127.0.0.1:{ports[0]}", api,
                                            smtp.port, surveys), port,
                                workdir / f"otklik-{slot}.log")
                        for slot, port in enumerate(ports)]
            chats = Chats(api)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=60)) as http:
                for product in products:  # one at a time: each migrates first
                    await product.start()
                w = World(config, products, api, chats, inbox, http, ledger, asyncio.Queue(),
                          random.Random(config.seed))
                began = time.monotonic()
                deadline = began + config.seconds
                background = [asyncio.create_task(chats.watch()),
                              asyncio.create_task(sampler(w, began)),
                              asyncio.create_task(killer(w, began)),
                              asyncio.create_task(api_faults(w, began))]
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(tickets(w, deadline))
                        for n in range(config.customers):
                            kind, play = pick(n, config.customers)
                            group.create_task(customer(w, kind, play, deadline))
                    elapsed = time.monotonic() - began
                    await asyncio.sleep(1.0)  # time for a second send, were there one
                finally:
                    for task in background:
                        task.cancel()
                    await asyncio.gather(*background, return_exceptions=True)
                    await asyncio.gather(*(product.stop() for product in products))
            violations, doubles, stored = await check(url, ledger, api, inbox)
    finally:
        smtp.stop()
    return Result(config, ledger, elapsed, stored, violations, doubles, hello_p99)


def pick(n: int, total: int) -> tuple[str, Play]:
    """Customer n's channel: the shares of CUSTOMERS, in blocks."""
    edge = 0.0
    for kind, play, share in CUSTOMERS:
        edge += share
        if n < round(edge * total):
            return kind, play
    return CUSTOMERS[-1][:2]


async def hello_round_trip(requests: int = 500) -> float:
    """p99 of a GET to a bare aiohttp handler on loopback from this process: the floor."""
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    times = []
    async with serve(app) as url, aiohttp.ClientSession() as http:
        for _ in range(requests):
            began = time.monotonic()
            async with http.get(url) as response:
                await response.read()
            times.append(time.monotonic() - began)
    return percentile(times, 0.99)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


# -- the invariants -------------------------------------------------------------------------


async def check(url: str, ledger: Ledger, api: BotApiStub, inbox: Inbox
                ) -> tuple[list[str], list[str], int]:
    """What broke (empty: nothing), deliveries sent twice around a kill, answers stored."""
    engine = create_engine(url)
    violations: list[str] = []
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(
                select(IdentityRow.channel, IdentityRow.address, DialogueRow.id,
                       AnswerRow.step_id, AnswerRow.score, AnswerRow.text)
                .join(DialogueRow, DialogueRow.customer_id == IdentityRow.customer_id)
                .join(AnswerRow, AnswerRow.session_id == DialogueRow.id))).all()
            stored_count = int((await connection.execute(
                select(func.count()).select_from(AnswerRow))).scalar_one())
            deliveries = int((await connection.execute(
                select(func.count()).select_from(DeliveryRow))).scalar_one())
        stored: dict[tuple[str, str], dict[str, list[str]]] = {}
        sessions: dict[tuple[str, str], set[int]] = {}
        for channel, address, session, step, score, text in rows:
            value = str(score) if score is not None else str(text)
            stored.setdefault((channel, address), {}).setdefault(step, []).append(value)
            sessions.setdefault((channel, address), set()).add(session)
        for key, taken in ledger.answered.items():
            for step, value in taken.items():
                if stored.get(key, {}).get(step) != [value]:
                    violations.append(f"{key} {step}: took {value!r}, stored "
                                      f"{stored.get(key, {}).get(step)}")
        for key, kept in stored.items():
            if len(sessions[key]) > 1:
                violations.append(f"{key}: {len(sessions[key])} dialogues")
            # An answer stored that the customer never saw taken (a kill between the commit
            # and the reply) must still be one the customer gave.
            violations += [f"{key} {step}: stored {values}, never given"
                           for step, values in kept.items()
                           if any((*key, step, value) not in ledger.tried for value in values)]
        doubles = sent_twice(api, inbox, ledger)
        violations += [double for double in doubles if not double.endswith(EXCUSED)]
        violations += await rollups_match(engine)
        if not deliveries or not stored_count:
            violations.append("no delivery made or no answer stored: nothing was tested")
    finally:
        await engine.dispose()
    return violations, doubles, stored_count


def sent_twice(api: BotApiStub, inbox: Inbox, ledger: Ledger) -> list[str]:
    """Each delivery's first question reached its chat (its address) once; a second one is
    excused only when the first was taken within a second before a kill."""
    firsts: dict[str, list[float]] = {}
    for call in api.calls:
        if call.method == "sendMessage" and call.ok and iter_buttons(
                {"reply_markup": call.params.get("reply_markup")}) and \
                "recommend" in str(call.params.get("text")):
            firsts.setdefault(f"chat {call.params['chat_id']}", []).append(call.at)
    for at, address, message_id in inbox.received:
        firsts.setdefault(f"{address} {message_id}", []).append(at)
    found = []
    for who, times in firsts.items():
        if len(times) > 1:
            excused = any(0 <= kill - times[0] <= 1.0 for kill in ledger.kills)
            found.append(f"{who} sent {len(times)} times" + (EXCUSED if excused else ""))
    return found


async def rollups_match(engine: Any) -> list[str]:
    metrics = MetricsService(Database(session_factory(engine)))
    today = date.today()
    problems = []
    for group_by in ("day", "channel"):
        query = MetricsQuery(survey=SURVEY, start=today - timedelta(days=1),
                             end=today + timedelta(days=1), group_by=group_by)
        rolled, counted = await metrics.compute(query), await metrics.from_answers(query)
        if rolled != counted:
            problems.append(f"rollups by {group_by} differ from the raw answers: "
                            f"{rolled.model_dump()} != {counted.model_dump()}")
    return problems


# -- the report -----------------------------------------------------------------------------


def report(result: Result) -> list[str]:
    config, ledger = result.config, result.ledger
    name = "PostgreSQL" if config.database.startswith("postgres") else "SQLite"
    started = sum(ledger.surveys.values()) + sum(ledger.errors.values())
    given = len({(channel, who, step) for channel, who, step, _ in ledger.tried})
    lines = [
        f"{name}: {config.customers} customers, {config.rate:g} surveys/s for "
        f"{config.seconds:.0f} s (then {result.seconds - config.seconds:.0f} s for the last "
        f"to finish), think {config.think[0]:g}-{config.think[1]:g} s, "
        f"{config.processes} process(es), {len(ledger.kills)} kill(s)"
        + (f", Telegram refusing every message for {ledger.faults[1] - ledger.faults[0]:.0f} s"
           if ledger.faults else ""),
        "  surveys answered: " + ", ".join(f"{k} {v}" for k, v in sorted(ledger.surveys.items())),
        f"  surveys started {started / config.seconds:.1f}/s: "
        f"{started / config.seconds / config.rate:.2f}x the {config.rate:g}/s asked for",
        f"  answers stored {result.stored}, {result.stored / result.seconds:.1f}/s: "
        f"{result.stored / max(given, 1):.2f}x the {given} answers given",
        f"  reply latency p50 {1000 * percentile(ledger.latencies, 0.5):.0f} ms, p99 "
        f"{1000 * percentile(ledger.latencies, 0.99):.0f} ms ({len(ledger.latencies)} "
        f"replies; p99 {percentile(ledger.latencies, 0.99) / result.hello_p99:.0f}x a bare "
        f"aiohttp hello's {1000 * result.hello_p99:.1f} ms)",
        f"  closing words lost with a failed first try of the last answer: "
        f"{ledger.closings_lost}",
        f"  errors: {sum(ledger.errors.values())}"
        + "".join(f"; {kind} {count}, first: {ledger.first_errors[kind]}"
                  for kind, count in sorted(ledger.errors.items())),
    ]
    lines += [line for slot in range(config.processes) for line in growth(result, slot)]
    lines.append("  invariants: " + ("hold (every answer taken stored once with its value, "
                                     "one dialogue a customer, rollups = recount, no "
                                     "delivery sent twice)" if not result.violations else
                                     f"BROKEN ({len(result.violations)}): "
                                     + "; ".join(result.violations[:5])))
    lines += [f"  sent twice at a kill: {d}" for d in result.doubles]
    return lines


def growth(result: Result, slot: int) -> list[str]:
    """Memory and descriptors of one process over its last life (a restarted process starts
    small), from the end of its warm-up (the first fifth of that life or of the run,
    whichever ends later) to the end."""
    mine = [s for s in result.ledger.samples if s[1] == slot]
    life = [s for s in mine if s[2] == mine[-1][2]] if mine else []
    if len(life) < 2:
        return []
    start = max(result.config.seconds / 5, life[0][0] + (life[-1][0] - life[0][0]) / 5)
    warm = [s for s in life if s[0] >= start] or life[-1:]
    first, last = warm[0], life[-1]
    series = " ".join(f"{s[0]:.0f}s:{s[3] / 1024:.0f}M/{s[4]}" for s in mine)
    return [f"  process {slot + 1}: memory after warm-up {first[3] / 1024:.0f} MiB -> end "
            f"{last[3] / 1024:.0f} MiB ({last[3] / first[3]:.2f}x); open descriptors "
            f"{first[4]} -> {last[4]} ({last[4] / first[4]:.2f}x)",
            f"    over time (s:RSS/fds): {series}"]


async def fresh_soak(config: Config, workdir: Path) -> Result:
    """The soak on a fresh database: the SQLite file named, or a new database on the
    PostgreSQL server named (dropped after)."""
    if config.database.startswith("sqlite"):
        return await soak(config, workdir)
    async with postgres_database(config.database) as url:
        return await soak(replace(config, database=url), workdir)


def postgres_server() -> str | None:
    return os.environ.get("OTKLIK_BENCH_POSTGRES_URL") or os.environ.get(
        "OTKLIK_TEST_POSTGRES_URL")


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="surveys started a second")
    parser.add_argument("--think", type=float, nargs=2, default=(2.0, 40.0))
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--kills", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--api-faults", type=float, default=0.0, metavar="SECONDS",
                        help="Telegram refuses every message (429, 500) this long")
    args = parser.parse_args(argv)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.databases.split(","):
            url = (f"sqlite+aiosqlite:///{tmp}/{name}.db" if name == "sqlite"
                   else postgres_server())
            if url is None:
                lines.append("PostgreSQL: not run (set OTKLIK_BENCH_POSTGRES_URL)")
                continue
            result = asyncio.run(fresh_soak(Config(
                url, args.seconds, args.customers, args.rate, tuple(args.think), args.kills,
                args.processes, args.api_faults),
                Path(tmp) / name))
            lines += report(result)
            print("\n".join(report(result)), flush=True)
    return lines


if __name__ == "__main__":
    main()
