"""Web benchmark: a delivery's hosted survey page (`/s/{token}`) over loopback, in page
renders/s and answers posted/s, each as a ratio to a bare aiohttp "hello" handler served to
the same client in the same run.

The load client runs in its own process (aiohttp, 32 requests in flight on keep-alive
connections, forked before any event loop exists) and the server in this one, so each can
have one of the 2 cores. Every request carries an `otklik_csrf` cookie, as a browser's does
once it has seen a page. The product is the web app as `otklik run` builds it
(bot.bootstrap.build_web_app: its middlewares and page headers, the Jinja2 templates, the
SurveyService) on a fresh SQLite file per round, migrated, with the example surveys loaded
and --deliveries e-mailed NPS deliveries inserted directly (a customer, its e-mail identity,
the delivery with its token, status "sent").

Per round, on the product: first opens, one GET of each token (each opens the delivery's
dialogue, committing a session row: the sessions table then holds --deliveries rows);
re-renders, GETs of the same tokens round-robin for at least --seconds (each finds the
delivery, its customer and its dialogue, and renders question 1 of 3, the 0-10 scale);
answers, one POST of each delivery's form (the csrf, session id and position its first page
gave, the score 9), each recorded as answer + rollup + state in one transaction and answered
303, a redirect the client does not follow. Every page is checked to hold question 1's form
and every POST to be answered 303, and the answers committed (counted in the answers table)
must equal the 303s. The baseline is a bare aiohttp app whose one handler answers "hello"
(text/plain) to GET and POST /s/{token}, whatever is sent: the same client sends it the same
kind of GETs for at least --seconds, then as many POSTs of the same form, each after 200
warm-up requests. Rate = requests answered as expected / wall time of the phase. The server's
CPU time per request (process time of this process, all threads, over the phase) is printed
beside each rate: other load on the machine lowers the rates more than it raises the CPU
times, and the report's first line gives the machine's load average before and after the run.
Rounds alternate (baseline, then Otklik); medians of the rounds, with their min–max beside.
The target of a page render is the server's CPU time per render (<= 0.8 ms), which other
load on the machine changes least.

Run: python -m bench.web [--seconds S] [--rounds N] [--deliveries N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Literal, Protocol

import aiohttp
from aiohttp import web
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dispatch import SURVEYS, bench_settings, count, serve, sqlite_url
from bench.standin import Child
from bench.stats import ROUNDS, Spread, machine_note, spread_note, verdict
from bot.bootstrap import build_services, build_web_app
from bot.services.scripts import load_scripts
from bot.services.triggers import new_token
from handlers.html import CSRF_COOKIE
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import AnswerRow, CustomerRow, DeliveryRow, DeliveryStatus, IdentityRow
from storage.uow import Database

SURVEY = "nps"
SCORE = 9  # the option index of 9 on the 0-10 scale
CONCURRENCY = 32
WARMUP = 200  # requests to the baseline before its measured phases
DELIVERIES = 1000
TARGET_RENDER_CPU, TARGET_RENDER_RATIO = 0.0008, 0.3  # seconds of server CPU per render
TARGET_ANSWERS, TARGET_ANSWER_RATIO = 300.0, 0.1
# What a page of question 1 holds, and where its dialogue's id is.
QUESTION_FORM = b'name="position" value="1"'
SESSION_FIELD = re.compile(rb'name="session" value="(\d+)"')

_customers: Table = CustomerRow.__table__  # type: ignore[assignment]
_identities: Table = IdentityRow.__table__  # type: ignore[assignment]
_deliveries: Table = DeliveryRow.__table__  # type: ignore[assignment]
_answers: Table = AnswerRow.__table__  # type: ignore[assignment]


# -- the load client ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """GET each token's page once ("open", reading the dialogue's id off each page), GET
    them round-robin for at least `seconds` ("render"), or POST each token's answer once
    ("answer", with the dialogue ids in `sessions`). `expect`: "page" for the product's
    question page, "hello" for the baseline's answer (which ignores what it is sent)."""

    base: str
    kind: Literal["open", "render", "answer"]
    tokens: tuple[str, ...]
    sessions: tuple[int, ...] = ()
    seconds: float = 0.0
    expect: Literal["page", "hello"] = "page"
    concurrency: int = CONCURRENCY
    warmup: int = 0  # requests like the phase's before it, not counted


@dataclass(frozen=True, slots=True)
class Load:
    """What the client saw in the measured phase: requests answered as expected, its wall
    time, the dialogue ids read off opened pages (in token order), and any failures."""

    ok: int
    seconds: float
    sessions: tuple[int, ...] = ()
    failures: int = 0
    first_failure: str | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


async def load(job: Job) -> Load:
    csrf = secrets.token_urlsafe(32)
    headers = {"Cookie": f"{CSRF_COOKIE}={csrf}"}
    sessions: dict[int, int] = {}
    ok = failures = 0
    first_failure: str | None = None

    def failed(message: str) -> None:
        nonlocal failures, first_failure
        failures += 1
        first_failure = first_failure or message

    async def get(http: aiohttp.ClientSession, n: int, measured: bool) -> None:
        nonlocal ok
        index = n % len(job.tokens)
        async with http.get(f"{job.base}/s/{job.tokens[index]}", headers=headers) as response:
            body = await response.read()
        expected = body == b"hello" if job.expect == "hello" else QUESTION_FORM in body
        if response.status != 200 or not expected:
            failed(f"GET {response.status}, not the {job.expect} expected: {body[:300]!r}")
        else:
            ok += measured
            if job.kind == "open" and (found := SESSION_FIELD.search(body)):
                sessions[index] = int(found.group(1))

    async def post(http: aiohttp.ClientSession, n: int, measured: bool) -> None:
        nonlocal ok
        index = n % len(job.tokens)
        form = {"csrf": csrf, "session": str(job.sessions[index]), "position": "1",
                "answer": str(SCORE)}
        async with http.post(f"{job.base}/s/{job.tokens[index]}", data=form, headers=headers,
                             allow_redirects=False) as response:
            body = await response.read()
        wanted = 200 if job.expect == "hello" else 303
        if response.status == wanted:
            ok += measured
        else:
            failed(f"POST {response.status} {body[:300]!r}")

    request = post if job.kind == "answer" else get

    async def phase(http: aiohttp.ClientSession, first: int, more: int | None,
                    seconds: float, measured: bool) -> None:
        """Requests numbered from `first`: `more` of them, or as many as `seconds` allow."""
        numbers = itertools.count(first)
        began = time.perf_counter()

        def going(n: int) -> bool:
            return n < first + more if more is not None else \
                time.perf_counter() - began < seconds

        async def worker() -> None:
            while going(n := next(numbers)):
                await request(http, n, measured)

        async with asyncio.TaskGroup() as group:
            for _ in range(job.concurrency):
                group.create_task(worker())

    connector = aiohttp.TCPConnector(limit=job.concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        await phase(http, 0, job.warmup, 0.0, measured=False)
        began = time.perf_counter()
        if job.kind == "render":
            await phase(http, job.warmup, None, job.seconds, measured=True)
        else:  # each token once: opening or answering twice would not be the same request
            await phase(http, job.warmup, len(job.tokens), 0.0, measured=True)
        elapsed = time.perf_counter() - began
    return Load(ok, elapsed, tuple(sessions.get(n, 0) for n in range(len(job.tokens)))
                if job.kind == "open" else (), failures, first_failure)


def client_process(pipe: Pipe) -> None:
    """The load client's process: runs each Job it is sent, answers with its Load."""
    while (job := pipe.recv()) is not None:
        pipe.send(asyncio.run(load(job)))


class Client(Protocol):
    """Runs jobs: in its own process for the figures, in this one for the tests."""

    async def run(self, job: Job) -> Load: ...


class ChildClient:
    def __init__(self, child: Child) -> None:
        self._child = child

    async def run(self, job: Job) -> Load:
        result: Load = await self._child.ask(job)
        return result


class LocalClient:
    async def run(self, job: Job) -> Load:
        return await load(job)


def checked(result: Load, what: str) -> Load:
    if result.failures:
        raise RuntimeError(f"{what}: {result.failures} request(s) failed, the first: "
                           f"{result.first_failure}")
    return result


# -- the servers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    url: str
    engine: AsyncEngine
    tokens: tuple[str, ...]


async def make_deliveries(engine: AsyncEngine, amount: int, version: int) -> tuple[str, ...]:
    """`amount` customers, each with an e-mail identity and an NPS delivery e-mailed a
    minute ago: its page is open. Returns their tokens."""
    now = datetime.now(UTC)
    tokens = tuple(new_token() for _ in range(amount))
    ids = range(1, amount + 1)
    customers = [{"id": n, "external_id": f"web-{n}", "first_name": "Anna", "locale": "en",
                  "email": f"c{n}@example.com", "attributes": {}, "created_at": now,
                  "updated_at": now} for n in ids]
    identities = [{"customer_id": n, "channel": "email", "address": f"c{n}@example.com",
                   "reachable": True, "created_at": now} for n in ids]
    deliveries = [{"customer_id": n, "survey_id": SURVEY, "script_version": version,
                   "channel": "email", "sent_channel": "email", "due_at": now
                   - timedelta(minutes=1), "status": DeliveryStatus.SENT, "attempts": 1,
                   "context": {}, "token": token, "created_at": now, "updated_at": now,
                   "sent_at": now, "expires_at": now + timedelta(days=7)}
                  for n, token in zip(ids, tokens, strict=True)]
    async with engine.begin() as connection:
        for table, rows in ((_customers, customers), (_identities, identities),
                            (_deliveries, deliveries)):
            await connection.execute(insert(table), rows)
    return tokens


@asynccontextmanager
async def otklik_site(db_path: Path, deliveries: int) -> AsyncIterator[Site]:
    """The product's web app as `otklik run` builds it, on a migrated database with the
    example surveys and `deliveries` open NPS deliveries."""
    database_url = sqlite_url(db_path)
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        loaded = await load_scripts(Database(session_factory(engine)), [SURVEYS],
                                    actor="bench", now=datetime.now(UTC))
        version = next(item.version for item in loaded if item.survey_id == SURVEY)
        tokens = await make_deliveries(engine, deliveries, version)
        settings = bench_settings(database_url)
        app = build_web_app(settings, engine, build_services(settings, engine))
        async with serve(app) as base:
            yield Site(base, engine, tokens)
    finally:
        await engine.dispose()


@asynccontextmanager
async def hello_site() -> AsyncIterator[str]:
    """The baseline: one bare handler, "hello" in text/plain to GET and POST /s/{token}."""
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_route("*", "/s/{token}", hello)
    async with serve(app) as base:
        yield base


# -- the phases -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    """A measured phase: requests/s as the client saw them, and the server's CPU time per
    request (this process, all its threads: the event loop and SQLite's)."""

    rate: float
    cpu: float  # seconds


async def measure(client: Client, job: Job, what: str) -> tuple[Load, Phase]:
    began = time.process_time()
    result = checked(await client.run(job), what)
    return result, Phase(result.rate, (time.process_time() - began) / max(result.ok, 1))


@dataclass(frozen=True, slots=True)
class Round:
    opens: Phase  # first opens
    renders: Phase  # re-renders
    answers: Phase
    hello_get: Phase
    hello_post: Phase


async def otklik_round(db_path: Path, client: Client, seconds: float, deliveries: int,
                       concurrency: int = CONCURRENCY) -> tuple[Phase, Phase, Phase]:
    """First opens, re-renders and answers on a fresh database, checked against it."""
    async with otklik_site(db_path, deliveries) as site:
        opened, opens = await measure(client, Job(site.url, "open", site.tokens,
                                                  concurrency=concurrency), "first opens")
        if opened.ok != deliveries or 0 in opened.sessions:
            raise RuntimeError(f"{opened.ok} pages opened of {deliveries}")
        _, renders = await measure(client, Job(site.url, "render", site.tokens, seconds=seconds,
                                               concurrency=concurrency), "re-renders")
        answered, answers = await measure(client, Job(site.url, "answer", site.tokens,
                                                      opened.sessions, concurrency=concurrency),
                                          "answers")
        committed = await count(site.engine, _answers)
    if committed != answered.ok or answered.ok != deliveries:
        raise RuntimeError(f"{committed} answers committed for {answered.ok} POSTs answered "
                           f"303 of {deliveries}")
    return opens, renders, answers


async def hello_round(client: Client, seconds: float, deliveries: int,
                      concurrency: int = CONCURRENCY, warmup: int = WARMUP
                      ) -> tuple[Phase, Phase]:
    """The baseline: GETs for `seconds`, then as many POSTs as the product is sent."""
    tokens = tuple(new_token() for _ in range(deliveries))
    async with hello_site() as base:
        _, got = await measure(client, Job(base, "render", tokens, seconds=seconds,
                                           expect="hello", concurrency=concurrency,
                                           warmup=warmup), "hello GETs")
        _, posted = await measure(client, Job(base, "answer", tokens, (1,) * len(tokens),
                                              expect="hello", concurrency=concurrency,
                                              warmup=warmup), "hello POSTs")
    return got, posted


async def run_rounds(tmp: Path, client: Client, seconds: float, rounds: int, deliveries: int
                     ) -> list[Round]:
    results = []
    for n in range(rounds):  # alternating: noise weighs on both
        hello_get, hello_post = await hello_round(client, seconds, deliveries)
        opens, renders, answers = await otklik_round(tmp / f"web-{n}.db", client, seconds,
                                                     deliveries)
        results.append(Round(opens, renders, answers, hello_get, hello_post))
    return results


# -- the report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


@dataclass(frozen=True, slots=True)
class Summary:
    """A phase over the rounds: requests/s and the server's CPU per request."""

    rate: Spread
    cpu: Spread

    @classmethod
    def of(cls, phases: Sequence[Phase]) -> Summary:
        return cls(Spread.of(p.rate for p in phases), Spread.of(p.cpu for p in phases))

    def show(self, unit: str) -> str:
        return f"{self.rate.show()} {unit}, server CPU {self.cpu.ms()} per request"


def report(results: Sequence[Round]) -> list[str]:
    opens, renders, answers, hello_get, hello_post = (
        Summary.of([getattr(r, name) for r in results])
        for name in ("opens", "renders", "answers", "hello_get", "hello_post"))
    render_ratio = renders.rate.median / hello_get.rate.median
    answer_ratio = answers.rate.median / hello_post.rate.median
    return [
        f"page renders (GET /s/{{token}} of an open dialogue, question 1 of 3, SQLite): "
        f"{renders.show('renders/s')} (target <= {ms(TARGET_RENDER_CPU)} per render: "
        f"{verdict(renders.cpu.median <= TARGET_RENDER_CPU)})",
        f"  baseline, bare aiohttp \"hello\" handler, the same GETs: "
        f"{hello_get.show('requests/s')}; ratio {render_ratio:.2f} (target >= "
        f"{TARGET_RENDER_RATIO}: {verdict(render_ratio >= TARGET_RENDER_RATIO)})",
        f"  first opens (the same GET, opening each delivery's dialogue): "
        f"{opens.show('pages/s')}; ratio {opens.rate.median / hello_get.rate.median:.2f}",
        f"answers posted (POST /s/{{token}}: score, rollup and state committed, 303; SQLite): "
        f"{answers.show('answers/s')} (target >= {TARGET_ANSWERS:,.0f} answers/s: "
        f"{verdict(answers.rate.median >= TARGET_ANSWERS)})",
        f"  baseline, bare aiohttp \"hello\" handler, the same POSTs: "
        f"{hello_post.show('requests/s')}; ratio {answer_ratio:.2f} (target >= "
        f"{TARGET_ANSWER_RATIO}: {verdict(answer_ratio >= TARGET_ANSWER_RATIO)})",
    ]


def run(seconds: float, rounds: int, deliveries: int) -> list[str]:
    load_before = os.getloadavg()[0]
    client = Child(client_process)  # forked now, before any event loop or thread exists
    try:
        with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
            results = asyncio.run(run_rounds(Path(tmp), ChildClient(client), seconds, rounds,
                                             deliveries))
    finally:
        client.close()
    return [
        machine_note(load_before),
        f"load client in its own process ({CONCURRENCY} requests in flight, keep-alive, CSRF "
        f"cookie), server in this one; per round a fresh SQLite file with {deliveries:,} open "
        f"NPS deliveries, each opened once (then {deliveries:,} sessions), re-rendered "
        f"round-robin for >= {seconds:g} s and answered once; the baseline gets >= "
        f"{seconds:g} s of GETs and {deliveries:,} POSTs after {WARMUP} warm-up requests "
        f"each; {spread_note(rounds)}",
        *report(results),
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="least time of re-renders and of baseline GETs (default 2)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"alternating rounds (default {ROUNDS})")
    parser.add_argument("--deliveries", type=int, default=DELIVERIES,
                        help=f"deliveries opened and answered per round (default "
                             f"{DELIVERIES})")
    args = parser.parse_args(argv)
    lines = run(args.seconds, args.rounds, args.deliveries)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
