"""Telegram benchmark: full-path throughput, from an update POSTed to the webhook to the answer
committed and the next message sent, in answers/s and p50/p99 step latency at 1, 50 and 500
concurrent chats, as a ratio to the minimal aiogram bot of bench/minimal_bot.py (FSM in
MemoryStorage, one plain INSERT per answer) playing the same survey on the same stub.

Each chat plays the NPS survey: /start, a tap on "9", a typed reason: three updates POSTed
over HTTP to the bot's webhook, and two answers (score and reason) per chat for both bots.
Otklik is assembled as `otklik run` assembles it (its start-up heap frozen too), the minimal
bot as written by hand. The bot under test runs in a process of its own (spawned afresh for
each phase), as in production; the driver and the Bot API (testkit/botapi.py's loopback
stub), which play Telegram's side, share another process and its event loop. So the bot's
figures do not include the stub's and the driver's CPU, except where both processes want the
same core: the report gives the CPU time (user + sys, all threads) each bot's process spent
per answer committed, its ratio between the bots (target: Otklik within 1.25x of the minimal
bot), and how busy the driver's process was. The stub POSTs through one aiohttp client pool,
so at most 100 updates are in flight at once (Telegram's own ceiling is max_connections <=
100): at 500 chats the others wait for a connection, and that wait is part of their latency.
A step's latency runs from POSTing the update to the stub recording the bot's next message
to that chat. Answers/s = answers committed (counted in the database, checked to be 2 per
chat) / wall time of the phase. Each level runs for at least --seconds on a fresh SQLite
file per bot after a warm-up, in alternating rounds (minimal bot, then Otklik), and the
medians are reported with the rounds' min–max beside them.

Run: python -m bench.telegram [--seconds S] [--rounds N] [--chats-scale F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import socket
import sqlite3
import statistics
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from pydantic import SecretStr

from bench.minimal_bot import build_minimal_bot, serve_webhook
from bench.stats import ROUNDS, Spread, machine_note, spread_note
from bot.bootstrap import build
from bot.commands import freeze_heap
from bot.examples import EXAMPLES
from bot.services.scripts import load_scripts
from bot.settings import Settings
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.uow import Database
from testkit.botapi import BotApiStub, Call, iter_buttons

JSON = dict[str, Any]
TOKEN = "123456:BENCH-telegram_bot"  # noqa: S105  (the loopback stub's, not a real bot's)
SECRET = "bench-secret"  # noqa: S105
SURVEYS = EXAMPLES
LEVELS = (1, 50, 500)
ANSWERS_PER_CHAT = 2  # the score and the reason, for both bots
SCORE_LABEL = "9"
REASON_TEXT = "Fast delivery and friendly support"
STEP_TIMEOUT = 60.0  # seconds: a step slower than this is a failure, not a figure
WARMUP_CHATS = 5
FIRST_CHAT = 1_000_000  # chat ids of measured chats; warm-up chats come before
TARGET_CHATS, TARGET_RATE, TARGET_P99, TARGET_RATIO = 50, 300, 0.100, 0.5
TARGET_CPU_RATIO = 1.25  # Otklik's CPU per answer in the bot's process, to the minimal bot's


# A bot served on a fresh database, talking to the Bot API at the base URL given; it yields
# the URL of its webhook. Each runs in a process of its own (see BotProcess).
Serve = Callable[[str, Path], AbstractAsyncContextManager[str]]


@dataclass(slots=True)
class Phase:
    """What one measured phase did."""

    chats: int
    answers: int
    seconds: float
    latencies: list[float] = field(repr=False)  # seconds, one per step
    stub_calls: int = 0
    bot_cpu: float = 0.0  # CPU seconds of the bot's process (all its threads)
    driver_cpu: float = 0.0  # CPU seconds of the driver and stub's process

    @property
    def rate(self) -> float:
        return self.answers / self.seconds

    @property
    def cpu_per_answer(self) -> float:
        return self.bot_cpu / self.answers

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- the two bots ---------------------------------------------------------------------------


@asynccontextmanager
async def minimal(api_base: str, db_path: Path) -> AsyncIterator[str]:
    """bench/minimal_bot.py on its own webhook server."""
    bot, dispatcher = build_minimal_bot(TOKEN, api_base, db_path)
    async with serve_webhook(bot, dispatcher, secret_token=SECRET) as url:
        yield url


@asynccontextmanager
async def otklik(api_base: str, db_path: Path) -> AsyncIterator[str]:
    """The product as `otklik run` builds it in webhook mode (bot.bootstrap.build): migrated
    database, surveys loaded, the webhook on the product's own aiohttp app."""
    database_url = f"sqlite+aiosqlite:///{db_path}"
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    await load_scripts(Database(session_factory(engine)), [SURVEYS], actor="bench",
                       now=datetime.now(UTC))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/telegram/webhook"
    values: dict[str, Any] = {
        "_env_file": None, "database_url": database_url, "bot_token": SecretStr(TOKEN),
        "telegram_api_base": api_base, "webhook_url": url,
        "webhook_secret": SecretStr(SECRET), "surveys_dir": SURVEYS, "default_survey": "nps",
        "admin_chat_id": None, "outbound_webhook_url": None, "smtp_url": None,
    }
    product = await build(Settings(**values), engine)
    assert product.telegram is not None  # a bot token is set
    bot, updates = product.telegram.bot, product.telegram.updates
    runner = web.AppRunner(product.web, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        await bot.set_webhook(url, secret_token=SECRET,
                              allowed_updates=updates.resolve_used_update_types())
        freeze_heap()  # as `otklik run` does once started
        yield url
    finally:
        await runner.cleanup()
        sock.close()  # closed already once the site has started; not if it never did
        await product.close()
        await engine.dispose()


BOTS: dict[str, Serve] = {"minimal": minimal, "otklik": otklik}


def answers_in(db_path: Path) -> int:
    """Answers committed, counted in the database on a connection of its own: both bots
    keep one row per answer in a table named `answers`."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return int(db.execute("SELECT count(*) FROM answers").fetchone()[0])


# -- the bot's process ----------------------------------------------------------------------


def serve_in_process(name: str, api_base: str, db_path: Path, pipe: Connection) -> None:
    """The child process: serve the bot, send its webhook URL (or why it failed) up the
    pipe, then answer each "cpu" with the CPU seconds this process has used, until "stop"."""
    asyncio.run(_serve_until_stopped(name, api_base, db_path, pipe))


async def _serve_until_stopped(name: str, api_base: str, db_path: Path,
                               pipe: Connection) -> None:
    try:
        async with BOTS[name](api_base, db_path) as url:
            pipe.send(url)
            # The pipe is read on a thread: the bot's event loop never blocks on it.
            while await asyncio.to_thread(pipe.recv) == "cpu":
                pipe.send(time.process_time())
    except Exception:
        pipe.send(RuntimeError(traceback.format_exc()))  # any exception's text pickles
        raise


class BotProcess:
    """A bot in a process of its own, so that it has the event loop (and, on two cores, a
    core) to itself, as it would in production, while this process plays Telegram."""

    def __init__(self, name: str, api_base: str, db_path: Path) -> None:
        self.url = ""
        self._pipe, child = multiprocessing.Pipe()
        # spawn, not fork: a fresh interpreter, not a copy of this one's running event loop
        self._process = multiprocessing.get_context("spawn").Process(
            target=serve_in_process, args=(name, api_base, db_path, child), daemon=True,
            name=f"bench-{name}")
        self._child = child

    async def __aenter__(self) -> BotProcess:
        self._process.start()
        self._child.close()  # ours closed: the pipe breaks (EOFError) if the child dies
        try:
            url = await asyncio.to_thread(self._pipe.recv)
        except EOFError:
            await asyncio.to_thread(self._process.join)
            raise RuntimeError(f"{self._process.name} died on start-up, exit code "
                               f"{self._process.exitcode}") from None
        if isinstance(url, BaseException):
            await self.__aexit__()
            raise RuntimeError(f"{self._process.name} failed to start") from url
        self.url = url
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._pipe.send("stop")
        await asyncio.to_thread(self._process.join, 30)
        if self._process.is_alive():
            self._process.kill()
        self._pipe.close()

    async def cpu(self) -> float:
        """CPU seconds the bot's process has used so far, all its threads."""
        self._pipe.send("cpu")
        seconds = await asyncio.to_thread(self._pipe.recv)
        if isinstance(seconds, BaseException):
            raise RuntimeError(f"{self._process.name} failed") from seconds
        return float(seconds)


# -- the driver -----------------------------------------------------------------------------


class Mailbox:
    """The time each chat gets its next message from the bot: one future per waiting chat,
    resolved by a task woken by the stub on every call it records (no polling). The time is
    the stub's own timestamp of the call, so the wake-up delay is not counted."""

    def __init__(self, api: BotApiStub) -> None:
        self._api = api
        self._seen = 0
        self._waiting: dict[int, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Mailbox:
        self._seen = len(self._api.calls)
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def expect(self, chat: int) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[chat] = future
        return future

    async def _watch(self) -> None:
        calls = self._api.calls
        while True:
            await self._api.wait_for(lambda: len(calls) > self._seen, timeout=24 * 3600)
            new, self._seen = calls[self._seen:], len(calls)
            for call in new:
                self._deliver(call)

    def _deliver(self, call: Call) -> None:
        if call.error is not None:
            chat = call.params.get("chat_id")
            future = self._waiting.pop(chat, None) if isinstance(chat, int) else None
            if future is not None and not future.done():
                future.set_exception(RuntimeError(
                    f"the bot's {call.method} to chat {chat} failed: {call.error}"))
        elif call.method == "sendMessage":
            future = self._waiting.pop(call.params["chat_id"], None)
            if future is not None and not future.done():
                future.set_result(call.at)


async def step(api: BotApiStub, mailbox: Mailbox, url: str, chat: int, update: JSON) -> float:
    """POST one update and wait for the bot's next message to the chat: the latency."""
    reply = mailbox.expect(chat)
    began = time.monotonic()  # the clock of Call.at
    status = await api.post_webhook(url, update, SECRET)
    if status != 200:
        raise RuntimeError(f"the webhook answered {status} to chat {chat}")
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            sent = await reply
    except TimeoutError:
        raise RuntimeError(f"chat {chat} got no reply in {STEP_TIMEOUT}s") from None
    return sent - began


async def play(api: BotApiStub, mailbox: Mailbox, url: str, chat: int) -> list[float]:
    """One customer's whole survey; returns the latency of each of its three steps."""
    latencies = [await step(api, mailbox, url, chat, api.message_update(chat, "/start"))]
    question = next((message for message in reversed(api.messages(chat))
                     for button in iter_buttons(message) if button["text"] == SCORE_LABEL),
                    None)
    if question is None:
        raise RuntimeError(f"chat {chat}: no button {SCORE_LABEL!r} after /start")
    data = next(button["callback_data"] for button in iter_buttons(question)
                if button["text"] == SCORE_LABEL)
    latencies.append(await step(api, mailbox, url, chat,
                                api.callback_update(chat, data, question["message_id"])))
    latencies.append(await step(api, mailbox, url, chat,
                                api.message_update(chat, REASON_TEXT)))
    return latencies


async def drive(api: BotApiStub, url: str, chats: Iterator[int], concurrency: int,
                keep_going: Callable[[], bool]) -> tuple[int, list[float]]:
    """`concurrency` customers at a time, each starting a new chat when done with one, while
    `keep_going()` and chat ids last; returns the chats played and every step's latency."""
    latencies: list[float] = []
    played = 0

    async def worker() -> None:
        nonlocal played
        while keep_going():
            chat = next(chats, None)
            if chat is None:
                return
            latencies.extend(await play(api, mailbox, url, chat))
            played += 1

    async with Mailbox(api) as mailbox, asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return played, latencies


async def measure(bot: str, db_path: Path, concurrency: int, *, seconds: float = 0.0,
                  chats: int | None = None, warmup: int = WARMUP_CHATS) -> Phase:
    """Serve a bot (a name in BOTS) in its own process on a fresh database and stub, warm it
    up, then play chats at `concurrency` until `seconds` have passed (or `chats` were
    started, when given)."""
    async with BotApiStub() as api, BotProcess(bot, api.base_url, db_path) as served:
        warm = iter(range(FIRST_CHAT - warmup, FIRST_CHAT))
        await drive(api, served.url, warm, min(concurrency, warmup), lambda: True)
        before = await asyncio.to_thread(answers_in, db_path)
        if before != ANSWERS_PER_CHAT * warmup:
            raise RuntimeError(f"warm-up: {before} answers committed for {warmup} chats")
        calls = len(api.calls)
        ids = itertools.count(FIRST_CHAT) if chats is None else iter(
            range(FIRST_CHAT, FIRST_CHAT + chats))
        bot_cpu = await served.cpu()
        began, driver_cpu = time.perf_counter(), time.process_time()
        played, latencies = await drive(api, served.url, ids, concurrency,
                                        lambda: time.perf_counter() - began < seconds
                                        or chats is not None)
        elapsed, driver_cpu = time.perf_counter() - began, time.process_time() - driver_cpu
        bot_cpu = await served.cpu() - bot_cpu
        answers = await asyncio.to_thread(answers_in, db_path) - before
        if answers != ANSWERS_PER_CHAT * played:
            raise RuntimeError(f"{answers} answers committed for {played} chats, expected "
                               f"{ANSWERS_PER_CHAT * played}")
        if api.errors:
            raise RuntimeError(f"the bot made {len(api.errors)} failed Bot API call(s), "
                               f"the first: {api.errors[0]}")
        return Phase(played, answers, elapsed, latencies, len(api.calls) - calls,
                     bot_cpu, driver_cpu)


# -- the report -----------------------------------------------------------------------------


@dataclass(slots=True)
class Summary:
    rate: Spread  # answers/s
    p50: float  # seconds, medians over the rounds
    p99: float
    chats: int
    calls_per_chat: float
    cpu: Spread  # seconds of the bot's process per answer
    driver_load: float = 0.0  # the driver and stub's CPU seconds per second


def summarise(phases: Sequence[Phase]) -> Summary:
    """The median over the rounds of each figure, and the spread of the rate and CPU."""
    return Summary(Spread.of(p.rate for p in phases),
                   statistics.median(p.percentile(0.50) for p in phases),
                   statistics.median(p.percentile(0.99) for p in phases),
                   round(statistics.median(p.chats for p in phases)),
                   statistics.median(p.stub_calls / p.chats for p in phases),
                   Spread.of(p.cpu_per_answer for p in phases),
                   statistics.median(p.driver_cpu / p.seconds for p in phases))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:,.0f} ms"


def describe(summary: Summary) -> str:
    return (f"{summary.rate.show()} answers/s, p50 {ms(summary.p50)}, "
            f"p99 {ms(summary.p99)}; {summary.chats:,} chats")


def report(concurrency: int, product: Summary, baseline: Summary) -> list[str]:
    ratio = product.rate.median / baseline.rate.median
    ratio_met = "met" if ratio >= TARGET_RATIO else "MISSED"
    cpu_ratio = product.cpu.median / baseline.cpu.median if baseline.cpu.median else 0.0
    cpu_met = "met" if cpu_ratio <= TARGET_CPU_RATIO else "MISSED"
    chats = f"{concurrency} concurrent chat{'s' if concurrency != 1 else ''}"
    targets = ""
    if concurrency == TARGET_CHATS:
        met = product.rate.median >= TARGET_RATE and product.p99 < TARGET_P99
        targets = (f" (targets >= {TARGET_RATE} answers/s, p99 < {ms(TARGET_P99)}: "
                   f"{'met' if met else 'MISSED'})")
    return [
        f"telegram, {chats} (SQLite): {describe(product)}{targets}",
        f"  baseline, minimal aiogram bot (MemoryStorage + plain INSERT): {describe(baseline)}"
        f"; ratio {ratio:.2f} (target >= {TARGET_RATIO}: {ratio_met})",
        f"  CPU per answer in the bot's process: Otklik {product.cpu.ms()}, minimal bot "
        f"{baseline.cpu.ms()}; ratio {cpu_ratio:.2f}x (target <= {TARGET_CPU_RATIO}x: "
        f"{cpu_met}); the driver and stub's process busy {product.driver_load:.0%} / "
        f"{baseline.driver_load:.0%} of a core",
    ]


async def stub_round_trip(calls: int = 500) -> float:
    """Seconds per sendMessage round trip from aiogram to the stub and back, one at a time:
    the floor that the stub and the HTTP client put under each Bot API call of both bots."""
    async with BotApiStub() as api:
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
        try:
            await bot.send_message(1, "warm-up")
            began = time.perf_counter()
            for n in range(calls):
                await bot.send_message(1 + n % 50, "What is the main reason for your score?")
            return (time.perf_counter() - began) / calls
        finally:
            await bot.session.close()


def run(levels: Sequence[int], seconds: float, rounds: int) -> list[str]:
    load_before = os.getloadavg()[0]
    phases: dict[tuple[str, int], list[Phase]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-telegram-") as tmp:
        for level in levels:
            for n in range(rounds):
                for name in BOTS:  # alternating, so noise weighs on both
                    db_path = Path(tmp) / f"{name}-{level}-{n}.db"
                    phases.setdefault((name, level), []).append(
                        asyncio.run(measure(name, db_path, level, seconds=seconds)))
    round_trip = asyncio.run(stub_round_trip())
    calls = {name: statistics.median(p.stub_calls / p.chats for level in levels
                                     for p in phases[name, level]) for name in BOTS}
    lines = [
        machine_note(load_before),
        f"the bot in a process of its own, the driver and Bot API stub in another; at most "
        f"100 updates in flight (the stub's HTTP pool); each level >= {seconds:g} s per bot "
        f"after a warm-up, fresh SQLite file each; {spread_note(rounds)}",
        f"stub: {ms(round_trip)} per sendMessage round trip from aiogram (one at a time, in "
        f"one process); Bot API calls per "
        f"chat: Otklik {calls['otklik']:.1f}, minimal bot {calls['minimal']:.1f}",
    ]
    for level in levels:
        lines += report(level, summarise(phases["otklik", level]),
                        summarise(phases["minimal", level]))
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="the least time each bot plays each level (default 2)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"alternating rounds of both bots per level (default {ROUNDS})")
    parser.add_argument("--chats-scale", type=float, default=1.0,
                        help="scale the concurrency levels 1, 50 and 500 (e.g. 0.1)")
    args = parser.parse_args(argv)
    levels = sorted({max(1, round(level * args.chats_scale)) for level in LEVELS})
    lines = run(levels, args.seconds, args.rounds)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
