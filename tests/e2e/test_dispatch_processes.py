"""The dispatcher in real `otklik run` processes against the loopback Bot API: two processes
over one database deliver every due survey exactly once, and a process killed with SIGKILL
mid-batch leaves nothing lost or doubled after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from bot.examples import EXAMPLES
from storage.db import create_engine, session_factory
from storage.models import CustomerRow, DeliveryRow, IdentityRow
from testkit.botapi import BotApiStub
from testkit.clock import midday
from testkit.migrated import load_examples, migrate
from testkit.net import free_port

SURVEYS = EXAMPLES
FIRST_CHAT = 500_000


async def due_deliveries(db_url: str, count: int, *, first: int = 1,
                         due_in: timedelta = timedelta(seconds=-1)) -> None:
    """A migrated database with the example surveys and `count` NPS deliveries due now
    (or `due_in` from now), each to its own Telegram chat: customers `first`, `first` + 1,
    ... in chats FIRST_CHAT + their number."""
    await migrate(db_url)
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    numbers = range(first, first + count)
    try:
        await load_examples(session_factory(engine), now)
        async with engine.begin() as connection:
            # Where it is noon: the NPS example's quiet hours never hold these back.
            await connection.execute(insert(CustomerRow), [
                {"id": n, "external_id": f"c{n}", "attributes": {}, "timezone": midday(now),
                 "created_at": now, "updated_at": now} for n in numbers])
            await connection.execute(insert(IdentityRow), [
                {"customer_id": n, "channel": "telegram", "address": str(FIRST_CHAT + n),
                 "reachable": True, "created_at": now} for n in numbers])
            await connection.execute(insert(DeliveryRow), [
                {"customer_id": n, "survey_id": "nps", "script_version": 1,
                 "channel": "telegram", "due_at": now + due_in,
                 "status": "scheduled", "attempts": 0, "context": {}, "token": f"t{n}",
                 "created_at": now, "updated_at": now} for n in numbers])
    finally:
        await engine.dispose()


async def statuses(db_url: str) -> Counter[str]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(select(DeliveryRow.status, func.count())
                                            .group_by(DeliveryRow.status))
            return Counter({status: count for status, count in rows.all()})
    finally:
        await engine.dispose()


async def settled(db_url: str, expected: Counter[str], seconds: float) -> None:
    """Poll the database (the stub cannot see it) until `expected`, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        if await statuses(db_url) == expected or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


def start(db_url: str, api: BotApiStub, cwd: Path, **extra: str) -> subprocess.Popen[str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "SURVEYS_DIR": str(SURVEYS),
           "LOG_LEVEL": "WARNING", "BOT_TOKEN": "123456:dispatch-test",
           "TELEGRAM_API_BASE": api.base_url, "HTTP_PORT": str(port),
           "WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram/hook", "WEBHOOK_SECRET": "s",
           "DISPATCH_INTERVAL": "0.2", "TELEGRAM_CHAT_RATE": "100", **extra}
    return subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def sent_chats(api: BotApiStub) -> Counter[int]:
    return Counter(call.params["chat_id"] for call in api.calls_of("sendMessage") if call.ok)


async def stop(*processes: subprocess.Popen[str]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        output, _ = process.communicate(timeout=30)
        assert process.returncode in (0, -signal.SIGKILL), output


async def test_two_processes_deliver_2000_surveys_once(db_url: str, tmp_path: Path) -> None:
    await due_deliveries(db_url, 2000)
    async with BotApiStub() as api:
        processes = [start(db_url, api, tmp_path, TELEGRAM_RATE="5000",
                           DISPATCH_BATCH="100") for _ in range(2)]
        try:
            await api.wait_for(lambda: len(sent_chats(api)) == 2000, timeout=180)
            await asyncio.sleep(1.0)  # time for a second send, were there one
        finally:
            await stop(*processes)
        chats = sent_chats(api)
    assert set(chats) == {FIRST_CHAT + n for n in range(1, 2001)}
    assert set(chats.values()) == {1}
    assert await statuses(db_url) == Counter({"sent": 2000})


async def test_a_process_killed_mid_batch_loses_and_doubles_nothing(
        db_url: str, tmp_path: Path) -> None:
    await due_deliveries(db_url, 300)
    async with BotApiStub() as api:
        process = start(db_url, api, tmp_path, TELEGRAM_RATE="40", DISPATCH_BATCH="100",
                        RETRY_BACKOFF="0.5", SENDING_TIMEOUT="1")
        try:
            await api.wait_for(lambda: len(sent_chats(api)) >= 40, timeout=120)
            # Telegram starts refusing every message: whatever the process sends from now on
            # fails, so nothing can be half sent when it dies; claimed deliveries wait.
            api.fail("sendMessage", status=429, retry_after=1, times=None)
            await api.wait_for(lambda: any(not c.ok for c in api.calls_of("sendMessage")),
                               timeout=30)
            # A message Telegram took whose outcome is not yet committed would be sent again
            # (Telegram has no idempotency key): die once those few milliseconds are over.
            delivered = len(sent_chats(api))
            deadline = time.monotonic() + 30
            while (before := await statuses(db_url))["sent"] < delivered:
                assert time.monotonic() < deadline, before
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            await stop(process)
        assert before["sending"] > 0  # claimed and not sent: what the kill must not lose
        api.clear_faults()
        restarted = start(db_url, api, tmp_path, TELEGRAM_RATE="1000", RETRY_BACKOFF="0.5",
                          SENDING_TIMEOUT="1")
        try:
            await settled(db_url, Counter({"sent": 300}), seconds=120)
        finally:
            await stop(restarted)
        chats = sent_chats(api)
    assert await statuses(db_url) == Counter({"sent": 300})
    assert set(chats) == {FIRST_CHAT + n for n in range(1, 301)}
    assert set(chats.values()) == {1}
