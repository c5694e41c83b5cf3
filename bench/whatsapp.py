"""WhatsApp benchmark: inbound answers/s through the product's webhook (a typed "9" stored
and the next question sent), as a ratio to the minimal pywa bot of bench/minimal_whatsapp.py
(signature, JSON, one INSERT, "Thanks") on the same posts, and deliveries sent/s through the
dispatcher's WhatsAppChannel, beside pywa's raw send_message rate; both against the Graph
API stand-in (testkit/graphapi.py), with the CPU time per operation beside each rate.

Meta's side runs in a process of its own, forked before any event loop exists: the Graph API
stand-in that both bots send through, and the load client that posts webhooks (aiohttp, 32
in flight on keep-alive connections). Each webhook is Meta's documented text notification
(GraphApiStub.text_update, a wamid of its own, bytes as Meta writes them), signed with
X-Hub-Signature-256 as Meta signs it, from one of --customers distinct customers whose
WhatsApp ids are valid German mobile numbers' digits (so the product also binds each to its
phone number, as it does a real one). The bots run in this process, so that its CPU time
(process time, all threads: the event loop and SQLite's) is the bot's alone.

Inbound, per round and bot, on a fresh SQLite file: every customer writes "hello", then
every customer writes "9". The product is the web app as `otklik run` builds it with
WhatsApp configured (bot.bootstrap.build_web_app: its middlewares, the signature check, the
SurveyService), migrated, with the example surveys loaded, serving /whatsapp/webhook:
"hello" from a new customer finds nothing open and starts DEFAULT_SURVEY (nps: a customer,
its WhatsApp and phone identities, a dialogue, the 0-10 question sent as a list); "9"
answers it (answer, rollup and dialogue state committed, the reason question sent). The
minimal bot stores each text and answers "Thanks". Each webhook is answered 200 only once
its work is committed and its reply accepted by the stand-in; every response must be 200,
the stand-in must have accepted one message per webhook, and the database must hold what the
posts asked for (the product: one NPS answer of 9 per customer and no other answer; the
minimal bot: one row per post), or the run fails. Rate = webhooks answered 200 / wall time of
the phase, as the client saw it; the headline is the "9" phase, the "hello" phase is shown
beside it. The server's CPU time per webhook over each phase is printed beside each rate.

Sends, per round on a fresh SQLite file: the product built as `otklik run` builds it with
WhatsApp only (bot.bootstrap.build: the DeliveryDispatcher with its messaging windows and
WhatsApp's daily template limit, batch 200, 100 sends in flight; the WhatsAppChannel on
pywa_async and httpx's default pool), its web app served. Due NPS deliveries, one per
customer, are inserted directly (customers at about noon in their time zone, each with a
WhatsApp identity that last wrote an hour ago, so inside the 24-hour window: the question
itself goes, as an interactive list of 10 rows, not the template); one tick() then claims
them batch after batch, opens each dialogue and sends its first question. Rate = deliveries
/ wall time of that tick(), after a warm-up tick of 20, checked against the rows marked sent
and the messages the stand-in accepted. The baseline is pywa_async's send_message of the
same list from one client (httpx's same default pool, 100 in flight, no database); the same
JSON POSTed by plain httpx shows what the stand-in itself takes. CPU per send is this
process's.

Rounds alternate baseline and product; medians of the rounds, with their min–max beside. The
first line of the report gives the machine's load average before and after the run.

Run: python -m bench.whatsapp [--customers N] [--sends N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from pywa.types.callback import Section, SectionList, SectionRow
from pywa.utils import Version
from sqlalchemy import Table, distinct, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import minimal_whatsapp
from bench.dispatch import SURVEYS, Sends, blast, count, serve, sqlite_url
from bench.standin import (
    CONCURRENCY,
    Child,
    Job,
    Phase,
    Platform,
    StandIn,
    StubCount,
    Webhook,
    replies,
)
from bench.stats import ROUNDS, Rounds, machine_note, spread_note, verdict
from bot.bootstrap import build, build_services, build_web_app
from bot.services.dispatch import DeliveryDispatcher
from bot.services.scripts import load_scripts
from bot.services.triggers import new_token
from bot.settings import Settings
from conversations.engine import start
from conversations.script import parse_script
from handlers.whatsapp import render
from handlers.whatsapp.channel import PATH, SIGNATURE_HEADER
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import AnswerRow, CustomerRow, DeliveryRow, DeliveryStatus, IdentityRow
from storage.uow import Database
from testkit import graphapi
from testkit.clock import midday
from testkit.graphapi import GraphApiStub

APP_SECRET = "bench-whatsapp-app-secret"  # noqa: S105  (the loopback stand-in's)
VERIFY_TOKEN = "bench-whatsapp-verify"  # noqa: S105
SURVEY = "nps"
HELLO, ANSWER, SCORE = "hello", "9", 9
CUSTOMERS = 1000
SENDS = 2000
WARMUP_SENDS = 20
SEND_CONCURRENCY = 100  # the dispatcher's default, and httpx's connection pool
FIRST_NUMBER = 4915100000000  # +49 151 ...: digits of valid mobile numbers, as wa_ids are
TARGET_RATIO = 0.5

_customers: Table = CustomerRow.__table__  # type: ignore[assignment]
_identities: Table = IdentityRow.__table__  # type: ignore[assignment]
_deliveries: Table = DeliveryRow.__table__  # type: ignore[assignment]
_answers: Table = AnswerRow.__table__  # type: ignore[assignment]


def wa_id(n: int) -> str:
    return str(FIRST_NUMBER + n)


def whatsapp_settings(database_url: str, api_base: str) -> Settings:
    """WhatsApp configured against the stand-in, and nothing else that reaches out."""
    values: dict[str, Any] = {
        "_env_file": None, "database_url": database_url, "surveys_dir": SURVEYS,
        "default_survey": SURVEY, "bot_token": None, "webhook_url": None,
        "whatsapp_token": SecretStr(graphapi.TOKEN),
        "whatsapp_phone_number_id": graphapi.PHONE_NUMBER_ID,
        "whatsapp_app_secret": SecretStr(APP_SECRET),
        "whatsapp_verify_token": SecretStr(VERIFY_TOKEN), "whatsapp_api_base": api_base,
        "admin_chat_id": None, "outbound_webhook_url": None, "smtp_url": None,
        "redis_url": None, "throttle_days": 0,
        # otklik run's defaults, whatever the environment says
        **{name: Settings.model_fields[name].default for name in (
            "whatsapp_template", "whatsapp_daily_customers", "dispatch_batch",
            "send_attempts", "retry_backoff", "sending_timeout", "anonymous_rate",
            "failed_attempts")},
    }
    return Settings(**values)


# -- Meta's side: the Graph API stand-in and the webhook's load client ----------------------


def webhook(api: GraphApiStub, job: Job, customer: str) -> Webhook:
    """`customer`'s text notification, signed X-Hub-Signature-256 as Meta signs it."""
    body = graphapi.webhook_body(api.text_update(customer, job.text))
    return body, {"Content-Type": "application/json",
                  SIGNATURE_HEADER: graphapi.sign(body, APP_SECRET)}


def stub_count(api: GraphApiStub) -> StubCount:
    sent = sum(1 for call in api.calls
               if call.ok and call.method == "POST" and call.path.endswith("/messages"))
    return StubCount(sent, len(api.errors), str(api.errors[0]) if api.errors else None)


META = StandIn("Meta", GraphApiStub, stub_count, webhook)


# -- inbound: the two bots ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bot:
    """A bot served on loopback: its webhook, and a check of its database once every
    customer has written "hello" and "9" (raises unless it holds what they asked for)."""

    url: str
    check: Callable[[Sequence[str]], Awaitable[None]]


Server = Callable[[Path, str], AbstractAsyncContextManager[Bot]]


@asynccontextmanager
async def otklik_bot(db_path: Path, api_base: str) -> AsyncIterator[Bot]:
    """The product's web app as `otklik run` builds it with WhatsApp configured, on a
    migrated database with the example surveys loaded."""
    database_url = sqlite_url(db_path)
    await upgrade_async(database_url)
    engine = create_engine(database_url)

    async def check(customers: Sequence[str]) -> None:
        nps = (_answers.c.survey_id == SURVEY, _answers.c.step_id == "score",
               _answers.c.score == SCORE, _answers.c.channel == "whatsapp")
        async with engine.connect() as connection:
            answered = (await connection.execute(select(
                func.count(), func.count(distinct(_answers.c.customer_id))).where(*nps))).one()
        total = await count(engine, _answers)
        if tuple(answered) != (len(customers), len(customers)) or total != len(customers):
            raise RuntimeError(f"{len(customers)} customers answered 9: {answered[0]} NPS "
                               f"answers of 9 stored, from {answered[1]} customers, and "
                               f"{total} answers in all")

    try:
        await load_scripts(Database(session_factory(engine)), [SURVEYS], actor="bench",
                           now=datetime.now(UTC))
        settings = whatsapp_settings(database_url, api_base)
        app = build_web_app(settings, engine, build_services(settings, engine))
        async with serve(app) as base:
            yield Bot(f"{base}{PATH}", check)
    finally:
        await engine.dispose()


@asynccontextmanager
async def minimal_bot(db_path: Path, api_base: str) -> AsyncIterator[Bot]:
    """bench/minimal_whatsapp.py on its own server."""
    wa, session = minimal_whatsapp.build_client(graphapi.TOKEN, graphapi.PHONE_NUMBER_ID,
                                                api_base)

    async def check(customers: Sequence[str]) -> None:
        stored = await minimal_whatsapp.messages_stored(db_path)
        if stored != 2 * len(customers):
            raise RuntimeError(f"{len(customers)} customers wrote twice: {stored} messages "
                               f"stored")

    try:
        async with serve(minimal_whatsapp.build_app(wa, APP_SECRET, db_path)) as base:
            yield Bot(f"{base}{minimal_whatsapp.PATH}", check)
    finally:
        await session.aclose()


BOTS: dict[str, Server] = {"minimal": minimal_bot, "otklik": otklik_bot}


@dataclass(frozen=True, slots=True)
class Inbound:
    starts: Phase  # every customer's "hello"
    answers: Phase  # every customer's "9"


async def inbound(server: Server, db_path: Path, meta: Platform, customers: Sequence[str],
                  concurrency: int = CONCURRENCY) -> Inbound:
    """A bot on a fresh database: every customer writes "hello", then "9"."""
    async with server(db_path, meta.base_url) as bot:
        starts = await replies(meta, Job(bot.url, tuple(customers), HELLO, concurrency),
                               f"{HELLO!r}")
        answers = await replies(meta, Job(bot.url, tuple(customers), ANSWER, concurrency),
                                f"{ANSWER!r}")
        await bot.check(customers)
    return Inbound(starts, answers)


# -- sends ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Outbox:
    engine: AsyncEngine
    dispatcher: DeliveryDispatcher
    script_version: int


@asynccontextmanager
async def outbox(db_path: Path, api_base: str) -> AsyncIterator[Outbox]:
    """The product as `otklik run` builds it with WhatsApp its one channel: its delivery
    dispatcher, and its web app served (whose cleanup closes pywa's session)."""
    database_url = sqlite_url(db_path)
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        loaded = await load_scripts(Database(session_factory(engine)), [SURVEYS],
                                    actor="bench", now=datetime.now(UTC))
        version = next(item.version for item in loaded if item.survey_id == SURVEY)
        product = await build(whatsapp_settings(database_url, api_base), engine)
        assert product.dispatcher is not None  # WhatsApp is configured
        try:
            async with serve(product.web):
                yield Outbox(engine, product.dispatcher, version)
        finally:
            await product.close()
    finally:
        await engine.dispose()


async def make_due(box: Outbox, ids: Sequence[int]) -> None:
    """One customer per id, its WhatsApp identity (it wrote an hour ago: inside the 24-hour
    window), and an NPS delivery due a minute ago."""
    now = datetime.now(UTC)
    customers = [{"id": n, "external_id": f"wa-{n}", "first_name": "Anna", "locale": "en",
                  "timezone": midday(now), "attributes": {}, "created_at": now,
                  "updated_at": now} for n in ids]
    identities = [{"customer_id": n, "channel": "whatsapp", "address": wa_id(n),
                   "reachable": True, "created_at": now,
                   "last_inbound_at": now - timedelta(hours=1)} for n in ids]
    deliveries = [{"customer_id": n, "survey_id": SURVEY, "script_version": box.script_version,
                   "channel": "whatsapp", "due_at": now - timedelta(minutes=1),
                   "status": DeliveryStatus.SCHEDULED, "attempts": 0, "context": {},
                   "token": new_token(), "created_at": now, "updated_at": now} for n in ids]
    async with box.engine.begin() as connection:
        for table, rows in ((_customers, customers), (_identities, identities),
                            (_deliveries, deliveries)):
            await connection.execute(insert(table), rows)


async def dispatch(box: Outbox, meta: Platform, ids: Sequence[int]) -> Sends:
    """Make `ids` due, then one tick: the time it takes to send them all."""
    await make_due(box, ids)
    before = await meta.count()
    began, cpu = time.perf_counter(), time.process_time()
    claimed = await box.dispatcher.tick()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    after = await meta.count()
    if after.errors > before.errors:
        raise RuntimeError(f"the stand-in answered {after.errors - before.errors} error(s), "
                           f"the first: {after.first_error}")
    sent = await count(box.engine, _deliveries, _deliveries.c.status == DeliveryStatus.SENT,
                       _deliveries.c.customer_id.in_(list(ids)))
    if not claimed == sent == after.sent - before.sent == len(ids):
        raise RuntimeError(f"{len(ids)} due: {claimed} claimed, {sent} marked sent, "
                           f"{after.sent - before.sent} messages accepted by the stand-in")
    return Sends(len(ids), elapsed, cpu / len(ids))


async def send_round(db_path: Path, meta: Platform, ids: Sequence[int], warmup: Sequence[int]
                     ) -> Sends:
    """A fresh database and dispatcher: a warm-up tick, then the measured one."""
    async with outbox(db_path, meta.base_url) as box:
        await dispatch(box, meta, warmup)
        return await dispatch(box, meta, ids)


def first_question() -> render.Shown:
    """What the dispatcher sends for a new NPS delivery inside the window (dialogue 1)."""
    script = parse_script((SURVEYS / f"{SURVEY}.yaml").read_text(encoding="utf-8"))
    return render.shown(start(script, now=datetime.now(UTC), locale="en").prompts[0], 1)


async def pywa_rate(meta: Platform, ids: Sequence[int],
                    concurrency: int = SEND_CONCURRENCY) -> Sends:
    """The baseline: one pywa_async client sending the dispatcher's question, `concurrency`
    at a time, no database."""
    question = first_question()
    wa, session = minimal_whatsapp.build_client(graphapi.TOKEN, graphapi.PHONE_NUMBER_ID,
                                                meta.base_url)
    rows = SectionList(button_title="Choose", sections=[Section(title="Options", rows=[
        SectionRow(option.title, callback_data=option.id) for option in question.options])])

    async def send(n: int) -> None:
        await wa.send_message(wa_id(n), question.text, buttons=rows)

    try:
        return await blast(meta, ids, send, concurrency)
    finally:
        await session.aclose()


async def plain_rate(meta: Platform, ids: Sequence[int],
                     concurrency: int = SEND_CONCURRENCY) -> Sends:
    """What the stand-in takes without pywa: the JSON pywa sends for the same list, POSTed
    by plain httpx, the answer parsed as JSON and not into pywa's types."""
    question = first_question()
    interactive = {"type": "list", "body": {"text": question.text}, "action": {
        "button": "Choose", "sections": [{"title": "Options", "rows": [
            {"id": option.id, "title": option.title} for option in question.options]}]}}
    url = f"{meta.base_url}/v{Version.GRAPH_API.value}/{graphapi.PHONE_NUMBER_ID}/messages"
    headers = {"Authorization": f"Bearer {graphapi.TOKEN}"}
    async with httpx.AsyncClient(timeout=30) as http:

        async def send(n: int) -> None:
            response = await http.post(url, headers=headers, json={
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": wa_id(n), "type": "interactive", "interactive": interactive})
            if response.status_code != 200 or "messages" not in response.json():
                raise RuntimeError(f"send: {response.status_code} {response.text[:300]}")

        return await blast(meta, ids, send, concurrency)


# -- the run and the report -----------------------------------------------------------------


def inbound_lines(product: Sequence[Inbound], baseline: Sequence[Inbound]) -> list[str]:
    answers, bare = Rounds([r.answers for r in product]), Rounds([r.answers for r in baseline])
    starts, bare_starts = (Rounds([r.starts for r in product]),
                           Rounds([r.starts for r in baseline]))
    ratio = answers.rate.median / bare.rate.median
    return [
        f"answers (a typed \"9\": the NPS answer, rollup and dialogue state committed, the "
        f"reason question sent, 200; SQLite): {answers.show('answers/s', 'answer')}",
        f"  baseline, minimal pywa bot (signature, JSON, one INSERT on aiosqlite, \"Thanks\" "
        f"by send_message), the same posts: {bare.show('messages/s', 'message')}; ratio "
        f"{ratio:.2f} (target >= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)}); CPU "
        f"{answers.cpu.median / bare.cpu.median:.1f}x the minimal bot's",
        f"  first messages (\"hello\": a new customer, its identities, the NPS dialogue, the "
        f"question sent as a list): {starts.show('messages/s', 'message')}; ratio "
        f"{starts.rate.median / bare_starts.rate.median:.2f} to the minimal bot's "
        f"{bare_starts.rate.show()}",
    ]


def send_lines(product: Sequence[Sends], raw: Sequence[Sends], plain: Sequence[Sends]
               ) -> list[str]:
    sent, pywa, httpx_ = Rounds(product), Rounds(raw), Rounds(plain)
    return [
        f"deliveries sent (WhatsAppChannel, inside the 24-hour window: the question as a "
        f"list of 10 rows): {sent.show('deliveries/s', 'delivery')}",
        f"  baseline, pywa_async's send_message of the same list ({SEND_CONCURRENCY} in "
        f"flight, no database): {pywa.show('messages/s', 'message')}; ratio "
        f"{sent.rate.median / pywa.rate.median:.2f}",
        f"  the stand-in without pywa (plain httpx POSTs of the same JSON): "
        f"{httpx_.show('messages/s', 'message')}",
    ]


async def run_inbound(tmp: Path, meta: Platform, rounds: int, customers: int
                      ) -> dict[str, list[Inbound]]:
    ids = [wa_id(n) for n in range(1, customers + 1)]
    results: dict[str, list[Inbound]] = {}
    for n in range(rounds):
        for name, server in BOTS.items():  # alternating: noise weighs on both
            results.setdefault(name, []).append(
                await inbound(server, tmp / f"inbound-{name}-{n}.db", meta, ids))
    return results


async def run_sends(tmp: Path, meta: Platform, rounds: int, sends: int
                    ) -> tuple[list[Sends], list[Sends], list[Sends]]:
    """Per round: pywa's raw rate, plain httpx's, then the dispatcher's on a fresh database.
    Ids are never reused: each is a customer in its round's database and an address."""
    numbers = itertools.count(1_000_000)

    def ids(amount: int) -> list[int]:
        return [next(numbers) for _ in range(amount)]

    product: list[Sends] = []
    raw: list[Sends] = []
    plain: list[Sends] = []
    for n in range(rounds):
        raw.append(await pywa_rate(meta, ids(sends + 1)))  # the first: the warm-up
        plain.append(await plain_rate(meta, ids(sends + 1)))
        product.append(await send_round(tmp / f"sends-{n}.db", meta, ids(sends),
                                        ids(WARMUP_SENDS)))
    return product, raw, plain


def run(customers: int, sends: int, rounds: int) -> list[str]:
    load_before = os.getloadavg()[0]
    child = Child(META.process)  # forked now, before any event loop or thread exists
    try:
        meta = META.remote(child)
        with tempfile.TemporaryDirectory(prefix="bench-whatsapp-") as tmp:
            received = asyncio.run(run_inbound(Path(tmp), meta, rounds, customers))
            product, raw, plain = asyncio.run(run_sends(Path(tmp), meta, rounds, sends))
    finally:
        child.close()
    return [
        machine_note(load_before),
        f"inbound: the Graph API stand-in and the load client in their own process "
        f"({CONCURRENCY} webhooks in flight, keep-alive, each signed X-Hub-Signature-256), "
        f"the bot in this one; per round {customers:,} customers each write \"hello\", "
        f"then \"9\", fresh SQLite file per bot; CPU is the bot's process's; "
        f"{spread_note(rounds)}",
        *inbound_lines(received["otklik"], received["minimal"]),
        f"sends: the Graph API stand-in in its own process; the dispatcher as otklik run "
        f"builds it with WhatsApp (batch 200, {SEND_CONCURRENCY} sends in flight), "
        f"{sends:,} due NPS deliveries per round after a warm-up tick of {WARMUP_SENDS}, "
        f"fresh SQLite file each, and {sends:,} messages per baseline; CPU is this "
        f"process's; {spread_note(rounds)}",
        *send_lines(product, raw, plain),
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=CUSTOMERS,
                        help=f"customers writing \"hello\" then \"9\" per round (default "
                             f"{CUSTOMERS:,})")
    parser.add_argument("--sends", type=int, default=SENDS,
                        help=f"deliveries sent, and messages per baseline, per round (default "
                             f"{SENDS:,})")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"alternating rounds (default {ROUNDS})")
    args = parser.parse_args(argv)
    lines = run(args.customers, args.sends, args.rounds)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
