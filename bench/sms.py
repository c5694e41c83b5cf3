"""SMS benchmark: replies/s through the product's Twilio webhook (a texted "5" answering the
open CSAT question: stored, and the next question sent) and deliveries sent/s by the
dispatcher through Twilio's own library, each as a ratio to the minimal handler and sender
of bench/minimal_sms.py (RequestValidator, the form, one INSERT, one create_async) on the
same library and the same Twilio stand-in (testkit/twilio.py), with the CPU time per
operation beside each rate; target >= 0.5 of the minimal's rate (CPU at most 2x its).

Twilio's side runs in a process of its own, forked before any event loop exists: the
Programmable Messaging stand-in that both sides send through, and the load client that
posts the incoming-message webhooks (aiohttp, 32 in flight on keep-alive connections). Each
webhook is Twilio's documented form (TwilioStub.inbound: a MessageSid of its own), signed
with X-Twilio-Signature over the public URL Twilio was given, from one of --customers
distinct customers whose numbers are valid German mobile ones. The product and the minimal
run in this process, so that its CPU time (process time, all threads: the event loop and
SQLite's) is theirs alone.

Per round and side, on a fresh SQLite file, a survey's life by SMS: sends, then replies.
The product is the process `otklik run` builds (bot.bootstrap.build) with Twilio its one
channel (TWILIO_* at the stand-in, PUBLIC_URL set), migrated, the example surveys loaded,
its web app served. Each customer gets a post_call_csat trigger (TriggerService.accept,
as POST /api/v1/triggers calls it: a customer known only by phone number, `channels:
["sms"]`, no delay; the script asks by SMS in `sms: dialogue` mode); one dispatcher tick
(batch 200, 100 sends in flight) then claims them batch after batch, opens each dialogue
and sends its first question by SmsChannel (one message: the question, how to answer, how
to stop). Sends/s = deliveries / wall time of that tick, checked against the rows marked
sent and the messages the stand-in accepted. Then each customer texts "5" to /sms/twilio:
the signature checked over PUBLIC_URL, the CSAT answer, rollup and dialogue state
committed, "Was your issue resolved?" sent back by the library, TwiML 200. Replies/s =
webhooks answered 200 / wall time of the phase as the client saw it, checked: every
webhook 200, one message accepted by the stand-in for each, one CSAT answer of 5 per
customer in the database and no other answer.

The minimal, on its own server: it sends the same number of messages (the first question's
text) by `client.messages.create_async`, 100 in flight, each sid INSERTed and committed as
its bookkeeping; then the same customers text "5" to its webhook, each stored and answered
"Thanks". Its figures are checked the same way (one row per message sent and received).
Before each measured phase both sides do the same on --warmup other customers, unmeasured.
The library's own rate without a database (create_async alone) is shown beside the
sends.

Rounds alternate minimal and product; medians of the rounds, with their min–max beside.
Each ratio is Otklik's over the minimal's: rates (target >= 0.5) and CPU per operation
(the same target seen from the CPU's side: at most 2x). The first line of the report gives
the machine's load average before and after the run.

Run: python -m bench.sms [--customers N] [--rounds N] [--warmup N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Table, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import minimal_sms
from bench.dispatch import SURVEYS, Sends, count, serve, sqlite_url
from bench.standin import (
    CONCURRENCY,
    Child,
    Job,
    Phase,
    Platform,
    StandIn,
    StubCount,
    Webhook,
    accepted,
    replies,
)
from bench.stats import ROUNDS, Rounds, machine_note, spread_note, verdict
from bench.whatsapp import FIRST_NUMBER
from bot.bootstrap import build
from bot.services.dispatch import DeliveryDispatcher
from bot.services.scripts import load_scripts
from bot.services.triggers import CustomerIn, Trigger, TriggerService
from bot.settings import Settings
from conversations.engine import start
from conversations.script import parse_script
from handlers.sms import render
from handlers.sms.twilio import INBOUND, SIGNATURE_HEADER
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import AnswerRow, DeliveryRow, DeliveryStatus
from storage.uow import Database
from testkit import twilio
from testkit.clock import midday
from testkit.twilio import TwilioStub

PUBLIC_URL = "https://feedback.example.com"  # what Twilio is told, and signs
SURVEY, STEP = "post_call_csat", "csat"  # `sms: dialogue` (the default mode)
ANSWER, SCORE = "5", 5
AGENT = "Maria"
CUSTOMERS = 3000
WARMUP = 100  # at least SEND_CONCURRENCY: every connection open before the clock starts
SEND_CONCURRENCY = 100  # the dispatcher's default, and aiohttp's connection pool
TARGET_RATIO = 0.5

_deliveries: Table = DeliveryRow.__table__  # type: ignore[assignment]
_answers: Table = AnswerRow.__table__  # type: ignore[assignment]


def phone(n: int) -> str:
    """A valid German mobile number in E.164, one per customer."""
    return f"+{FIRST_NUMBER + n}"


def sms_settings(database_url: str, api_base: str) -> Settings:
    """Twilio configured against the stand-in, and nothing else that reaches out."""
    values: dict[str, Any] = {
        "_env_file": None, "database_url": database_url, "surveys_dir": SURVEYS,
        "public_url": PUBLIC_URL, "twilio_account_sid": twilio.ACCOUNT_SID,
        "twilio_auth_token": SecretStr(twilio.AUTH_TOKEN), "twilio_from": twilio.FROM_NUMBER,
        "twilio_api_base": api_base, "smsc_login": None, "smsc_password": None,
        "smsc_callback_secret": None, "bot_token": None, "webhook_url": None,
        "whatsapp_token": None, "admin_chat_id": None, "outbound_webhook_url": None,
        "smtp_url": None, "redis_url": None, "throttle_days": 0,
        # otklik run's defaults, whatever the environment says
        **{name: Settings.model_fields[name].default for name in (
            "default_survey", "dispatch_batch", "send_attempts", "retry_backoff",
            "sending_timeout", "anonymous_rate", "failed_attempts")},
    }
    return Settings(**values)


# -- Twilio's side: the stand-in and the webhooks' load client ------------------------------


def webhook(api: TwilioStub, job: Job, customer: str) -> Webhook:
    """`customer`'s incoming-message form, signed X-Twilio-Signature over `job.signed_url`
    as Twilio signs it."""
    params = api.inbound(customer, job.text)
    return params, {SIGNATURE_HEADER: twilio.sign(job.signed_url, params, api.auth_token),
                    "User-Agent": "TwilioProxy/1.1"}


def stub_count(api: TwilioStub) -> StubCount:
    errors = [call for call in api.calls if call.status != 201]
    return StubCount(len(api.calls) - len(errors), len(errors),
                     str(errors[0].response) if errors else None)


TWILIO = StandIn("Twilio", TwilioStub, stub_count, webhook)


# -- measuring ------------------------------------------------------------------------------


async def send_all(api: Platform, ids: Sequence[int], send: Callable[[int], Awaitable[object]],
                   concurrency: int = SEND_CONCURRENCY) -> Sends:
    """`send(n)` for each id, `concurrency` at a time, timed, checked against the
    stand-in's count."""
    todo = iter(ids)
    failed: list[str] = []

    async def worker() -> None:
        for n in todo:
            try:
                await send(n)
            except Exception as error:  # counted: the run fails below
                failed.append(f"{type(error).__name__}: {error}")

    before = await api.count()
    began, cpu = time.perf_counter(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    if failed:
        raise RuntimeError(f"sends: {len(failed)} of {len(ids)} failed, the first: "
                           f"{failed[0][:300]}")
    accepted("sends", before, await api.count(), len(ids))
    return Sends(len(ids), elapsed, cpu / len(ids))


@dataclass(frozen=True, slots=True)
class Round:
    sends: Sends  # the first question to each customer
    replies: Phase  # each customer's "5"


def first_question() -> str:
    """The text the dispatcher sends a new post_call_csat delivery by SMS, in English."""
    script = parse_script((SURVEYS / f"{SURVEY}.yaml").read_text(encoding="utf-8"))
    prompt = start(script, now=datetime.now(UTC), locale="en",
                   context={"agent_name": AGENT}).prompts[0]
    return f"{render.text(prompt, 'en')}\n\n{render.how_to_stop('en')}"


# -- the product ----------------------------------------------------------------------------


@dataclass(slots=True)
class Product:
    engine: AsyncEngine
    triggers: TriggerService
    dispatcher: DeliveryDispatcher
    url: str  # its Twilio webhook on loopback


@asynccontextmanager
async def otklik(db_path: Path, api_base: str) -> AsyncIterator[Product]:
    """The process as `otklik run` builds it with Twilio its one channel, on a migrated
    database with the example surveys loaded, its web app served (whose cleanup closes
    the library's HTTP client)."""
    database_url = sqlite_url(db_path)
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        await load_scripts(Database(session_factory(engine)), [SURVEYS], actor="bench",
                           now=datetime.now(UTC))
        product = await build(sms_settings(database_url, api_base), engine)
        assert product.dispatcher is not None  # Twilio is configured
        try:
            async with serve(product.web) as base:
                yield Product(engine, product.services.triggers, product.dispatcher,
                              f"{base}{INBOUND}")
        finally:
            await product.close()
    finally:
        await engine.dispose()


async def trigger(product: Product, ids: Sequence[int]) -> None:
    """A post_call_csat trigger for each id: a customer known only by their phone number,
    at about noon where they live (outside the script's quiet hours), by SMS only, due at
    once."""
    now = datetime.now(UTC)
    for n in ids:
        customer = CustomerIn(f"sms-{n}", phone=phone(n), first_name="Anna", locale="en",
                              timezone=midday(now))
        key = f"bench-sms-{n}"
        body = {"survey": SURVEY, "idempotency_key": key,
                "customer": {"external_id": customer.external_id, "phone": customer.phone,
                             "first_name": "Anna", "locale": "en",
                             "timezone": customer.timezone},
                "context": {"agent_name": AGENT}, "delay": "PT0S", "channels": ["sms"]}
        done = await product.triggers.accept(Trigger(
            SURVEY, key, customer, body, context={"agent_name": AGENT},
            delay=timedelta(0), channels=("sms",)))
        if done.status != DeliveryStatus.SCHEDULED:
            raise RuntimeError(f"customer {n}'s trigger: {done.status} ({done.reason})")


async def dispatch(product: Product, api: Platform, ids: Sequence[int]) -> Sends:
    """Trigger `ids`, then one tick: the time it takes to send them all."""
    await trigger(product, ids)

    async def sent() -> int:
        return await count(product.engine, _deliveries,
                           _deliveries.c.status == DeliveryStatus.SENT,
                           _deliveries.c.sent_channel == "sms")

    before, sent_before = await api.count(), await sent()
    began, cpu = time.perf_counter(), time.process_time()
    claimed = await product.dispatcher.tick()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    accepted("sends", before, await api.count(), len(ids))
    marked = await sent() - sent_before
    if not claimed == marked == len(ids):
        raise RuntimeError(f"{len(ids)} due: {claimed} claimed, {marked} marked sent by SMS")
    return Sends(len(ids), elapsed, cpu / len(ids))


async def check_answers(engine: AsyncEngine, customers: int) -> None:
    """One CSAT answer of 5 by SMS per customer, and no other answer."""
    csat = (_answers.c.survey_id == SURVEY, _answers.c.step_id == STEP,
            _answers.c.score == SCORE, _answers.c.channel == "sms")
    async with engine.connect() as connection:
        answered = (await connection.execute(select(
            func.count(), func.count(distinct(_answers.c.customer_id))).where(*csat))).one()
    total = await count(engine, _answers)
    if tuple(answered) != (customers, customers) or total != customers:
        raise RuntimeError(f"{customers} customers texted {ANSWER}: {answered[0]} CSAT "
                           f"answers of {SCORE} stored, from {answered[1]} customers, and "
                           f"{total} answers in all")


async def otklik_round(db_path: Path, api: Platform, ids: Sequence[int],
                       warmup: Sequence[int], concurrency: int = CONCURRENCY) -> Round:
    """The product on a fresh database: `warmup`'s customers surveyed and answering, then
    `ids`' (measured)."""
    async with otklik(db_path, api.base_url) as product:

        def job(numbers: Sequence[int]) -> Job:
            return Job(product.url, tuple(map(phone, numbers)), ANSWER, concurrency,
                       PUBLIC_URL + INBOUND)

        await dispatch(product, api, warmup)
        await replies(api, job(warmup), "warm-up replies")
        sends = await dispatch(product, api, ids)
        answers = await replies(api, job(ids), f"{ANSWER!r}")
        await check_answers(product.engine, len(warmup) + len(ids))
    return Round(sends, answers)


# -- the minimal ----------------------------------------------------------------------------


async def minimal_round(db_path: Path, api: Platform, ids: Sequence[int],
                        warmup: Sequence[int], concurrency: int = CONCURRENCY) -> Round:
    """bench/minimal_sms.py on a fresh database: `warmup`'s customers sent the question and
    replying, then `ids`' (measured)."""
    client, http = minimal_sms.build_client(twilio.ACCOUNT_SID, twilio.AUTH_TOKEN,
                                            api.base_url)
    question = first_question()
    app = minimal_sms.build_app(client, twilio.FROM_NUMBER, twilio.AUTH_TOKEN, PUBLIC_URL,
                                db_path)
    try:
        async with serve(app) as base:
            db = app[minimal_sms.DB]  # the handler's connection, opened on startup

            async def send(n: int) -> str:
                return await minimal_sms.send(client, db, twilio.FROM_NUMBER, phone(n),
                                              question)

            def job(numbers: Sequence[int]) -> Job:
                return Job(f"{base}{minimal_sms.PATH}", tuple(map(phone, numbers)), ANSWER,
                           concurrency, PUBLIC_URL + minimal_sms.PATH)

            await send_all(api, warmup, send)
            await replies(api, job(warmup), "warm-up replies")
            sends = await send_all(api, ids, send)
            answers = await replies(api, job(ids), f"{ANSWER!r}")
    finally:
        await http.close()
    expected = len(warmup) + len(ids)
    stored = (await minimal_sms.sends_stored(db_path), await minimal_sms.messages_stored(db_path))
    if stored != (expected, expected):
        raise RuntimeError(f"{expected} messages sent and received: {stored[0]} sends and "
                           f"{stored[1]} messages stored")
    return Round(sends, answers)


async def library_rate(api: Platform, ids: Sequence[int], warmup: Sequence[int]) -> Sends:
    """The library alone: create_async of the same question, no database."""
    client, http = minimal_sms.build_client(twilio.ACCOUNT_SID, twilio.AUTH_TOKEN,
                                            api.base_url)
    question = first_question()

    async def send(n: int) -> object:
        return await client.messages.create_async(to=phone(n), from_=twilio.FROM_NUMBER,
                                                  body=question)

    try:
        await send_all(api, warmup, send)
        return await send_all(api, ids, send)
    finally:
        await http.close()


SIDES: dict[str, Callable[..., Awaitable[Round]]] = {"minimal": minimal_round,
                                                      "otklik": otklik_round}


# -- the run and the report -----------------------------------------------------------------


def ratios(product: Rounds, baseline: Rounds) -> str:
    """Otklik's over the minimal's: the rate, then the CPU per operation, with targets."""
    rate = product.rate.median / baseline.rate.median
    cpu = product.cpu.median / baseline.cpu.median
    return (f"ratio {rate:.2f} (target >= {TARGET_RATIO}: {verdict(rate >= TARGET_RATIO)}); "
            f"CPU {cpu:.2f}x the minimal's (target <= {1 / TARGET_RATIO:.1f}x: "
            f"{verdict(cpu <= 1 / TARGET_RATIO)})")


def reply_lines(product: Sequence[Round], baseline: Sequence[Round]) -> list[str]:
    answers, bare = Rounds([r.replies for r in product]), Rounds([r.replies for r in baseline])
    return [
        f"replies (a texted \"{ANSWER}\" to the open CSAT question: signature, the answer, "
        f"rollup and dialogue state committed, the next question sent by the library, "
        f"TwiML 200; SQLite): {answers.show('replies/s', 'reply')}",
        f"  baseline, minimal handler (RequestValidator, the form, one INSERT on aiosqlite, "
        f"\"Thanks\" by create_async), the same posts: {bare.show('messages/s', 'message')}; "
        f"{ratios(answers, bare)}",
    ]


def send_lines(product: Sequence[Round], baseline: Sequence[Round], library: Sequence[Sends]
               ) -> list[str]:
    sent, bare = Rounds([r.sends for r in product]), Rounds([r.sends for r in baseline])
    alone = Rounds(library)
    return [
        f"deliveries sent (trigger -> one dispatcher tick: the dialogue opened, the first "
        f"question by SmsChannel through the library): {sent.show('deliveries/s', 'delivery')}",
        f"  baseline, minimal sender (create_async of the same text, {SEND_CONCURRENCY} in "
        f"flight, one INSERT per message): {bare.show('messages/s', 'message')}; "
        f"{ratios(sent, bare)}",
        f"  the library alone (create_async, no database): {alone.show('messages/s', 'message')}",
    ]


async def run_rounds(tmp: Path, api: Platform, rounds: int, customers: int, warmup: int
                     ) -> tuple[dict[str, list[Round]], list[Sends]]:
    """Per round: the library's raw rate, then each side on a fresh database. Numbers are
    never reused: each is a customer once."""
    numbers = itertools.count(1)

    def ids(amount: int) -> list[int]:
        return [next(numbers) for _ in range(amount)]

    results: dict[str, list[Round]] = {}
    library: list[Sends] = []
    for n in range(rounds):
        library.append(await library_rate(api, ids(customers), ids(warmup)))
        for name, side in SIDES.items():  # alternating: noise weighs on both
            results.setdefault(name, []).append(await side(
                tmp / f"sms-{name}-{n}.db", api, ids(customers), ids(warmup)))
    return results, library


def run(customers: int, rounds: int, warmup: int) -> list[str]:
    load_before = os.getloadavg()[0]
    child = Child(TWILIO.process)  # forked now, before any event loop or thread exists
    try:
        api = TWILIO.remote(child)
        with tempfile.TemporaryDirectory(prefix="bench-sms-") as tmp:
            results, library = asyncio.run(run_rounds(Path(tmp), api, rounds, customers,
                                                      warmup))
    finally:
        child.close()
    return [
        machine_note(load_before),
        f"the Twilio stand-in and the webhooks' load client in their own process "
        f"({CONCURRENCY} webhooks in flight, keep-alive, each signed X-Twilio-Signature "
        f"over PUBLIC_URL), the product or the minimal in this one; per round and side a "
        f"fresh SQLite file, {customers:,} customers sent the first question "
        f"({SEND_CONCURRENCY} sends in flight; the product: post_call_csat triggers by SMS, "
        f"then one dispatcher tick, batch 200), then each texting \"{ANSWER}\", after "
        f"{warmup} warm-up customers; CPU is this process's; {spread_note(rounds)}",
        *reply_lines(results["otklik"], results["minimal"]),
        *send_lines(results["otklik"], results["minimal"], library),
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=CUSTOMERS,
                        help=f"customers sent the question, then replying, per round and "
                             f"side (default {CUSTOMERS:,})")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"alternating rounds (default {ROUNDS})")
    parser.add_argument("--warmup", type=int, default=WARMUP,
                        help=f"customers before the measured ones (default {WARMUP})")
    args = parser.parse_args(argv)
    lines = run(args.customers, args.rounds, args.warmup)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
