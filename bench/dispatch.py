"""Dispatch benchmark: triggers accepted/s over HTTP (signature check, policy, insert) as a
ratio to a bare aiohttp handler doing one INSERT per request, and deliveries sent/s to a stub
Bot API with the limiter set high as a ratio to the stub's raw rate from one aiogram Bot,
and as a share of each configured send rate, all measured in the same run.

Triggers: a load client in its own process (aiohttp, 32 requests in flight on keep-alive
connections) POSTs signed triggers (HMAC-SHA256 of the timestamp and the body, as
handlers/api/core.py checks them) to the product's aiohttp app (bot.bootstrap.build_web_app) served
by this process on loopback: client and server can each have one of the 2 cores. Every
trigger has its own idempotency key and customer (external id, Telegram id, first name,
locale) and two context fields, for the post_call_csat survey; each is answered 202 after a
trigger and a scheduled delivery are committed. The baseline is served the same way to the
same client: a bare aiohttp handler that parses the JSON and does one INSERT (the body, into
the triggers table of the same migrated schema) in its own transaction, through an engine
from storage.db.create_engine. Rate = 202 answers / wall time over at least --seconds, after
100 warm-up requests, on a fresh SQLite file each time, checked against the rows committed;
medians of alternating rounds.

Deliveries: the Bot API stub (testkit/botapi.py) runs in its own process. The sender
bot is built as `otklik run` builds it (bot/runner.py build_sender_bot: no retries, the
Limiter in a RateLimited middleware, TELEGRAM_CHAT_RATE at its default 1/s), and so is the
dispatcher (batch 200, 100 sends in flight). Due NPS deliveries, one per customer and chat,
are inserted directly (customers, Telegram identities, deliveries); one tick() then claims
them batch after batch, opens each dialogue and sends its first question (the 0-10
keyboard). Rate = deliveries / wall time of that tick(), checked against the rows marked
sent and the stub's count of sendMessage calls, after a warm-up tick of 20, on a fresh SQLite
file each time. At a configured rate R, R x --seconds deliveries are sent, and the limiter's
one-second burst is spent before the clock starts: the figure is the sustained rate. With
the limiter set high, and for each baseline, 2,000 are sent. The baseline is one aiogram Bot
without middlewares sending the same question, 100 in flight, no limiter, no database; the
same form POSTed by plain aiohttp shows what the stub itself takes. Medians of the rounds.
Both helper processes are forked at the start, before any event loop or thread exists. The
first line of the report gives the machine's load average before and after the run.

Beside each rate, the CPU time (user + sys, all threads) of this process per operation: per
trigger request (warm-up included) for the servers, per delivery for the dispatcher and the
baselines' senders (the stub's process not counted). Figures are medians of the rounds,
which alternate product and baseline, with their min–max beside.

Run: python -m bench.dispatch [--seconds S] [--rounds N] [--rates 100,300,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import itertools
import json
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.standin import Child, Platform, StandIn, StubCount
from bench.stats import ROUNDS, Rounds, machine_note, spread_note, verdict
from bot.bootstrap import build_services, build_web_app
from bot.examples import EXAMPLES
from bot.limits import Limiter, RateLimited
from bot.services.dispatch import DeliveryDispatcher
from bot.services.scripts import load_scripts
from bot.services.surveys import mark_unreachable
from bot.services.triggers import new_token
from bot.settings import Settings
from conversations.engine import start
from conversations.script import parse_script
from handlers.api.core import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from handlers.telegram import app as telegram
from handlers.telegram import render
from handlers.telegram.channel import TelegramChannel
from handlers.telegram.customer import markup_for
from handlers.telegram.render import Markup
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import CustomerRow, DeliveryRow, DeliveryStatus, IdentityRow, TriggerRow
from storage.uow import Database
from testkit.botapi import BotApiStub
from testkit.clock import midday

TOKEN = "123456:BENCH-dispatch_bot"  # noqa: S105  (the loopback stub's, not a real bot's)
SECRET = "bench-trigger-secret"  # noqa: S105
ADMIN = "bench-admin-token"
SURVEYS = EXAMPLES
TRIGGER_SURVEY = "post_call_csat"
SEND_SURVEY = "nps"
CLIENT_CONCURRENCY = 32  # trigger requests in flight
SEND_CONCURRENCY = 100  # the dispatcher's default, and aiogram's connection pool
WARMUP_REQUESTS = 100
WARMUP_SENDS = 20
RATES = (100.0, 300.0, 1000.0)
HIGH = 1_000_000.0  # "the limiter set high": it never makes a message wait
HIGH_SENDS = 2000  # sent with the limiter set high, and by each stub baseline
TARGET_TRIGGERS, TARGET_TRIGGER_RATIO, TARGET_SHARE = 500.0, 0.4, 0.95

_customers: Table = CustomerRow.__table__  # type: ignore[assignment]
_identities: Table = IdentityRow.__table__  # type: ignore[assignment]
_deliveries: Table = DeliveryRow.__table__  # type: ignore[assignment]
_triggers: Table = TriggerRow.__table__  # type: ignore[assignment]


def sqlite_url(db_path: Path) -> str:
    return f"sqlite+aiosqlite:///{db_path}"


def bench_settings(database_url: str, *, api_base: str = "http://127.0.0.1:9",
                   rate: float = 30.0) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None, "database_url": database_url, "bot_token": SecretStr(TOKEN),
        "telegram_api_base": api_base, "surveys_dir": SURVEYS,
        "admin_token": SecretStr(ADMIN), "trigger_secret": SecretStr(SECRET),
        "telegram_rate": rate, "webhook_url": None, "admin_chat_id": None,
        "outbound_webhook_url": None, "smtp_url": None, "throttle_days": 0,
        # otklik run's defaults, whatever the environment says
        **{name: Settings.model_fields[name].default for name in (
            "telegram_chat_rate", "dispatch_batch", "send_attempts", "retry_backoff",
            "sending_timeout")},
    }
    return Settings(**values)


async def count(engine: AsyncEngine, table: Table, *where: Any) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(
            select(func.count()).select_from(table).where(*where))).scalar_one())


# -- helper processes -----------------------------------------------------------------------


class Client(Protocol):
    """Runs load jobs: in its own process for the figures, in this one for the tests."""

    async def run(self, job: LoadJob) -> Load: ...


class ChildClient:
    def __init__(self, child: Child) -> None:
        self._child = child

    async def run(self, job: LoadJob) -> Load:
        load: Load = await self._child.ask(job)
        return load


class LocalClient:
    async def run(self, job: LoadJob) -> Load:
        return await load(job)


# -- triggers: the load client --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadJob:
    url: str
    seconds: float = 0.0  # POST for at least this long...
    requests: int | None = None  # ...or exactly this many, when given
    concurrency: int = CLIENT_CONCURRENCY
    warmup: int = WARMUP_REQUESTS


@dataclass(frozen=True, slots=True)
class Load:
    """What the client saw: 202 answers in the measured phase and its wall time."""

    accepted: int
    seconds: float
    failures: int = 0
    first_failure: str | None = None
    cpu: float = 0.0  # the server's CPU seconds per request, warm-up included

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds


def trigger_body(n: int) -> bytes:
    return json.dumps({
        "survey": TRIGGER_SURVEY, "idempotency_key": f"call-{n}",
        "customer": {"external_id": f"crm-{n}", "telegram_id": 10_000_000 + n,
                     "first_name": "Anna", "locale": "ru"},
        "context": {"agent": "Ivanova", "queue": "billing"},
    }).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature(SECRET.encode(), stamp, body)}


async def load(job: LoadJob) -> Load:
    """POST signed triggers, `job.concurrency` at a time: the warm-up, then the measured
    phase. Request bodies are built and signed as they go (the client has its own core)."""
    numbers = itertools.count()
    accepted = failures = 0
    first_failure: str | None = None

    async def post(http: aiohttp.ClientSession, measured: bool) -> None:
        nonlocal accepted, failures, first_failure
        body = trigger_body(next(numbers))
        async with http.post(job.url, data=body, headers=signed_headers(body)) as response:
            answer = await response.read()
        if response.status == 202:
            accepted += measured
        else:
            failures += 1
            first_failure = first_failure or f"{response.status} {answer[:300]!r}"

    async def workers(http: aiohttp.ClientSession, keep_going: Callable[[int], bool],
                      measured: bool) -> None:
        started = itertools.count()

        async def worker() -> None:
            while keep_going(next(started)):
                await post(http, measured)

        async with asyncio.TaskGroup() as group:
            for _ in range(job.concurrency):
                group.create_task(worker())

    connector = aiohttp.TCPConnector(limit=job.concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await workers(http, lambda n: n < job.warmup, measured=False)
        began = time.perf_counter()
        if job.requests is not None:
            total = job.requests
            await workers(http, lambda n: n < total, measured=True)
        else:
            await workers(http, lambda n: time.perf_counter() - began < job.seconds,
                          measured=True)
        elapsed = time.perf_counter() - began
    return Load(accepted, elapsed, failures, first_failure)


def client_process(pipe: Pipe) -> None:
    """The load client's process: runs each LoadJob it is sent, answers with its Load."""
    while (job := pipe.recv()) is not None:
        pipe.send(asyncio.run(load(job)))


# -- triggers: the two servers --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    rows: Callable[[], Awaitable[int]]  # trigger rows committed


TriggerServer = Callable[[Path], AbstractAsyncContextManager[Server]]


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()  # closed already once the site has started; not if it never did


@asynccontextmanager
async def otklik_triggers(db_path: Path) -> AsyncIterator[Server]:
    """The product's web app as `otklik run` builds it, on a migrated database with the
    example surveys loaded."""
    database_url = sqlite_url(db_path)
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        await load_scripts(Database(session_factory(engine)), [SURVEYS], actor="bench",
                           now=datetime.now(UTC))
        settings = bench_settings(database_url)
        app = build_web_app(settings, engine, build_services(settings, engine))
        async with serve(app) as base:
            yield Server(f"{base}/api/v1/triggers", lambda: count(engine, _triggers))
    finally:
        await engine.dispose()


@asynccontextmanager
async def bare_triggers(db_path: Path) -> AsyncIterator[Server]:
    """The baseline: parse the JSON, one INSERT in its own transaction, answer 202."""
    database_url = sqlite_url(db_path)
    await upgrade_async(database_url)
    engine = create_engine(database_url)

    async def post_trigger(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        async with engine.begin() as connection:
            await connection.execute(insert(_triggers), {
                "source": "bare", "idempotency_key": data["idempotency_key"], "payload": data,
                "received_at": datetime.now(UTC)})
        return web.json_response({"accepted": True}, status=202)

    app = web.Application()
    app.router.add_post("/api/v1/triggers", post_trigger)
    try:
        async with serve(app) as base:
            yield Server(f"{base}/api/v1/triggers", lambda: count(engine, _triggers))
    finally:
        await engine.dispose()


TRIGGER_SERVERS: dict[str, TriggerServer] = {"bare": bare_triggers, "otklik": otklik_triggers}


async def accept_triggers(server: TriggerServer, db_path: Path, client: Client,
                          job: Callable[[str], LoadJob]) -> Load:
    """Serve on a fresh database, run the client's job against it, check every 202 left a
    committed trigger row."""
    async with server(db_path) as target:
        began = time.process_time()
        result = await client.run(job(target.url))
        cpu = time.process_time() - began
        rows = await target.rows()
    if result.failures:
        raise RuntimeError(f"{result.failures} trigger request(s) failed, the first: "
                           f"{result.first_failure}")
    warmup = job(target.url).warmup
    if rows != warmup + result.accepted:
        raise RuntimeError(f"{rows} triggers committed for {warmup + result.accepted} "
                           f"accepted")
    return dataclasses.replace(result, cpu=cpu / rows)


# -- deliveries -----------------------------------------------------------------------------


def stub_count(api: BotApiStub) -> StubCount:
    sent = sum(1 for call in api.calls if call.ok and call.method == "sendMessage")
    return StubCount(sent, len(api.errors), str(api.errors[0]) if api.errors else None)


BOT_API = StandIn("the Bot API stub", BotApiStub, stub_count)  # counts; posts no webhooks


@dataclass(frozen=True, slots=True)
class Sends:
    sent: int
    seconds: float
    cpu: float  # this process's CPU seconds per send

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


@dataclass(slots=True)
class Outbox:
    """The product's sending side on one database: the dispatcher, and the sender bot's
    limiter (to spend its burst before a measurement)."""

    engine: AsyncEngine
    dispatcher: DeliveryDispatcher
    limiter: Limiter
    rate: float
    script_version: int


@asynccontextmanager
async def outbox(db_path: Path, api_base: str, rate: float) -> AsyncIterator[Outbox]:
    database_url = sqlite_url(db_path)
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    db = Database(session_factory(engine))
    loaded = await load_scripts(db, [SURVEYS], actor="bench", now=datetime.now(UTC))
    version = next(item.version for item in loaded if item.survey_id == SEND_SURVEY)
    settings = bench_settings(database_url, api_base=api_base, rate=rate)
    services = build_services(settings, engine)
    # bot.bootstrap.build_sender_bot, keeping a handle on the limiter.
    limiter = Limiter(settings.telegram_rate, settings.telegram_chat_rate)
    bot = telegram.build_bot(settings, functools.partial(mark_unreachable, db), retry=False)
    bot.session.middleware(RateLimited(limiter))
    dispatcher = DeliveryDispatcher(
        db, {"telegram": TelegramChannel(bot, telegram.build_i18n())},
        scripts=services.scripts, batch=settings.dispatch_batch,
        attempts=settings.send_attempts, backoff=timedelta(seconds=settings.retry_backoff),
        sending_timeout=timedelta(seconds=settings.sending_timeout))
    try:
        yield Outbox(engine, dispatcher, limiter, rate, version)
    finally:
        await bot.session.close()
        await engine.dispose()


async def make_due(box: Outbox, chats: Sequence[int]) -> None:
    """One customer per chat, its Telegram identity, and an NPS delivery due a minute ago."""
    now = datetime.now(UTC)
    customers = [{"id": chat, "external_id": f"chat-{chat}", "first_name": "Anna",
                  "locale": "en", "timezone": midday(now), "attributes": {},
                  "created_at": now, "updated_at": now} for chat in chats]
    identities = [{"customer_id": chat, "channel": "telegram", "address": str(chat),
                   "reachable": True, "created_at": now} for chat in chats]
    deliveries = [{"customer_id": chat, "survey_id": SEND_SURVEY,
                   "script_version": box.script_version, "channel": "telegram",
                   "due_at": now - timedelta(minutes=1), "status": DeliveryStatus.SCHEDULED,
                   "attempts": 0, "context": {}, "token": new_token(), "created_at": now,
                   "updated_at": now} for chat in chats]
    async with box.engine.begin() as connection:
        for table, rows in ((_customers, customers), (_identities, identities),
                            (_deliveries, deliveries)):
            await connection.execute(insert(table), rows)


async def spend_burst(box: Outbox) -> None:
    """Empty the limiter's bucket (a second's worth, allowed at once), as a backlog would:
    from then on it lets through `rate` a second. Chats no delivery uses."""
    for n in range(int(box.rate) + 1):
        await box.limiter.acquire(-1 - n)


async def dispatch(box: Outbox, stub: Platform, chats: Sequence[int], *,
                   sustained: bool) -> Sends:
    """Make `chats` due, then one tick: the time it takes to send them all."""
    await make_due(box, chats)
    before = await stub.count()
    if sustained:
        await spend_burst(box)
    began, cpu = time.perf_counter(), time.process_time()
    claimed = await box.dispatcher.tick()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    after = await stub.count()
    if after.errors:
        raise RuntimeError(f"the stub answered {after.errors} error(s), the first: "
                           f"{after.first_error}")
    sent = await count(box.engine, _deliveries, _deliveries.c.status == DeliveryStatus.SENT,
                       _deliveries.c.customer_id.in_(list(chats)))
    if not claimed == sent == after.sent - before.sent == len(chats):
        raise RuntimeError(f"{len(chats)} due: {claimed} claimed, {sent} marked sent, "
                           f"{after.sent - before.sent} sendMessage calls")
    return Sends(len(chats), elapsed, cpu / len(chats))


async def send_rate(db_path: Path, stub: Platform, rate: float, chats: Sequence[int],
                    warmup: Sequence[int]) -> Sends:
    """A fresh database and sender limited to `rate`: a warm-up tick, then the measured one."""
    async with outbox(db_path, stub.base_url, rate) as box:
        await dispatch(box, stub, warmup, sustained=False)
        return await dispatch(box, stub, chats, sustained=rate < HIGH)


def first_question() -> tuple[str, Markup | None]:
    """The text and keyboard the dispatcher sends for a new NPS delivery (session id 1)."""
    script = parse_script((SURVEYS / f"{SEND_SURVEY}.yaml").read_text(encoding="utf-8"))
    prompt = start(script, now=datetime.now(UTC), locale="en").prompts[0]
    i18n = telegram.build_i18n()
    return render.text(prompt), markup_for(
        prompt, 1, lambda message: i18n.gettext(message, locale="en"))


async def blast(stub: Platform, chats: Sequence[int], send: Callable[[int], Awaitable[None]],
                concurrency: int) -> Sends:
    """`send(chat)` to the first chat (the warm-up: a connection opens), then to the others,
    `concurrency` at a time, timed, and checked against the stub's count."""
    await send(chats[0])
    todo = iter(chats[1:])

    async def worker() -> None:
        for chat in todo:
            await send(chat)

    before = await stub.count()
    began, cpu = time.perf_counter(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    after = await stub.count()
    if after.errors or after.sent - before.sent != len(chats) - 1:
        raise RuntimeError(f"stub: {after.sent - before.sent} sent of {len(chats) - 1}, "
                           f"{after.errors} errors ({after.first_error})")
    return Sends(len(chats) - 1, elapsed, cpu / (len(chats) - 1))


async def stub_rate(stub: Platform, chats: Sequence[int],
                    concurrency: int = SEND_CONCURRENCY) -> Sends:
    """The baseline: one aiogram Bot, no middlewares, sending the question the dispatcher
    sends, `concurrency` at a time, no limiter and no database."""
    text, markup = first_question()
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(stub.base_url)),
              default=DefaultBotProperties(parse_mode="HTML"))

    async def send(chat: int) -> None:
        await bot.send_message(chat, text, reply_markup=markup)

    try:
        return await blast(stub, chats, send, concurrency)
    finally:
        await bot.session.close()


async def plain_rate(stub: Platform, chats: Sequence[int],
                     concurrency: int = SEND_CONCURRENCY) -> Sends:
    """What the stub takes without aiogram: the same form POSTed by plain aiohttp, the
    keyboard serialized once, the answer parsed as JSON and not into models."""
    text, markup = first_question()
    keyboard = json.dumps(markup.model_dump(mode="json", exclude_none=True)) if markup else ""
    url = f"{stub.base_url}/bot{TOKEN}/sendMessage"
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def send(chat: int) -> None:
            form = {"chat_id": str(chat), "text": text, "parse_mode": "HTML",
                    "reply_markup": keyboard}
            async with http.post(url, data=form) as response:
                answer = json.loads(await response.read())
            if not answer.get("ok"):
                raise RuntimeError(f"sendMessage: {answer}")

        return await blast(stub, chats, send, concurrency)


# -- the run and the report -----------------------------------------------------------------


def share(value: float) -> str:
    return f"{value * 100:.1f} %"


def trigger_lines(product: Sequence[Load], baseline: Sequence[Load]) -> list[str]:
    ours, bare = Rounds(product), Rounds(baseline)
    ratio = ours.rate.median / bare.rate.median
    return [
        f"triggers accepted (HTTP + signature + policy + trigger and delivery rows, SQLite): "
        f"{ours.show('triggers/s', 'request')} (target >= {TARGET_TRIGGERS:,.0f} triggers/s: "
        f"{verdict(ours.rate.median >= TARGET_TRIGGERS)})",
        f"  baseline, bare aiohttp handler (parse JSON, one INSERT through storage.db's "
        f"engine): {bare.show('requests/s', 'request')}; ratio {ratio:.2f} (target >= "
        f"{TARGET_TRIGGER_RATIO}: {verdict(ratio >= TARGET_TRIGGER_RATIO)})",
    ]


def send_lines(rates: dict[float, Sequence[Sends]], high: Sequence[Sends],
               raw: Sequence[Sends], plain: Sequence[Sends]) -> list[str]:
    top, aiogram, aiohttp_ = Rounds(high), Rounds(raw), Rounds(plain)
    lines = [
        f"deliveries sent, limiter set high ({HIGH:,.0f}/s): "
        f"{top.show('deliveries/s', 'delivery')}",
        f"  baseline, the stub's raw rate from one aiogram Bot ({SEND_CONCURRENCY} in flight, "
        f"no limiter, no database): {aiogram.show('sendMessage/s', 'message')}; ratio "
        f"{top.rate.median / aiogram.rate.median:.2f}",
        f"  the stub without aiogram (plain aiohttp POSTs of the same form): "
        f"{aiohttp_.show('sendMessage/s', 'message')}",
    ]
    for rate, runs in sorted(rates.items()):
        sent = Rounds(runs)
        achieved = sent.rate.median
        lines.append(f"deliveries sent, limiter at {rate:,.0f}/s: "
                     f"{sent.rate.show()} deliveries/s = {share(achieved / rate)} of "
                     f"the rate (target >= {share(TARGET_SHARE)}: "
                     f"{verdict(achieved >= TARGET_SHARE * rate)}); CPU "
                     f"{sent.cpu.ms()} per delivery")
    return lines


async def run_triggers(tmp: Path, client: Client, seconds: float, rounds: int
                       ) -> dict[str, list[Load]]:
    loads: dict[str, list[Load]] = {}
    for n in range(rounds):
        for name, server in TRIGGER_SERVERS.items():  # alternating: noise weighs on both
            loads.setdefault(name, []).append(await accept_triggers(
                server, tmp / f"triggers-{name}-{n}.db", client,
                lambda url: LoadJob(url, seconds=seconds)))
    return loads


async def run_sends(tmp: Path, stub: Platform, seconds: float, rounds: int,
                    rates: Sequence[float]
                    ) -> tuple[dict[float, list[Sends]], list[Sends], list[Sends]]:
    """Per round: the stub's raw rate, then each configured rate and the limiter set high,
    each on a fresh database; chat ids are never reused (the stub lives through the run)."""
    chat_ids = itertools.count(1_000_000)

    def chats(n: int) -> list[int]:
        return [next(chat_ids) for _ in range(n)]

    sends: dict[float, list[Sends]] = {}
    raw: list[Sends] = []
    plain: list[Sends] = []
    for n in range(rounds):
        raw.append(await stub_rate(stub, chats(HIGH_SENDS + 1)))  # the first: the warm-up
        plain.append(await plain_rate(stub, chats(HIGH_SENDS + 1)))
        for rate in (*rates, HIGH):
            amount = HIGH_SENDS if rate == HIGH else round(rate * seconds)
            sends.setdefault(rate, []).append(await send_rate(
                tmp / f"sends-{rate:.0f}-{n}.db", stub, rate, chats(amount),
                chats(WARMUP_SENDS)))
    return sends, raw, plain


def run(seconds: float, rounds: int, rates: Sequence[float]) -> list[str]:
    load_before = os.getloadavg()[0]
    # Both helpers are forked now, before any event loop or thread exists.
    client, stub = Child(client_process), Child(BOT_API.process)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
            loads = asyncio.run(run_triggers(Path(tmp), ChildClient(client), seconds, rounds))
            sends, raw, plain = asyncio.run(run_sends(Path(tmp), BOT_API.remote(stub), seconds,
                                                      rounds, rates))
    finally:
        client.close()
        stub.close()
    return [
        machine_note(load_before),
        f"triggers: load client in its own process ({CLIENT_CONCURRENCY} requests in flight, "
        f"HMAC-signed), server in this one, each >= {seconds:g} s after "
        f"{WARMUP_REQUESTS} warm-up requests on a fresh SQLite file; {spread_note(rounds)}",
        *trigger_lines(loads["otklik"], loads["bare"]),
        f"deliveries: Bot API stub in its own process; sender bot and dispatcher as otklik "
        f"run builds them (batch 200, {SEND_CONCURRENCY} sends in flight, one chat per "
        f"delivery); {seconds:g} s of sends per rate after the limiter's burst, "
        f"{HIGH_SENDS:,} with it set high and per baseline, fresh SQLite file each; "
        f"{spread_note(rounds)}",
        *send_lines({rate: sends[rate] for rate in rates}, sends[HIGH], raw, plain),
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="least time per trigger phase, and of sends per rate (default 3)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"alternating rounds (default {ROUNDS})")
    parser.add_argument("--rates", default=",".join(f"{rate:g}" for rate in RATES),
                        help="limiter rates to check, messages/s (default 100,300,1000)")
    args = parser.parse_args(argv)
    rates = sorted({float(rate) for rate in args.rates.split(",")})
    lines = run(args.seconds, args.rounds, rates)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
