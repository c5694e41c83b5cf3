"""Outbound webhooks end to end: dialogues on the hosted page queue events in their own
transactions, and the sender POSTs them, signed, to a receiver on loopback; retries on a
clock the test moves, one customer's events in order, an hour-long outage, two senders at
once, and nothing at all without OUTBOUND_WEBHOOK_URL. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.services.webhooks import WebhookSender
from bot.signing import signature
from conversations.engine import Reply, advance
from storage.db import session_factory
from storage.models import AnswerRow, OutboxRow
from storage.uow import Database, Store
from tests.e2e.test_web_pages import delivery, form_of, page, submit
from tests.e2e.trigger_support import SURVEYS, Api, serving
from tests.integration.storage.support import NOW, begin, csat_script, record, store

SECRET = "outbound-secret-for-tests"


@dataclass
class Received:
    event: str
    delivery: int
    body: dict[str, Any]
    signed: bool
    raw: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Receiver:
    """A webhook receiver: answers with `statuses` in turn (then 200), or with `fail` for
    chosen deliveries the first time each comes; checks every signature."""

    statuses: list[int] = field(default_factory=list)
    fail_once: set[int] = field(default_factory=set)
    delay: float = 0.0
    got: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers["X-Otklik-Timestamp"]
        signed = hmac.compare_digest(request.headers["X-Otklik-Signature"],
                                     signature(SECRET.encode(), stamp, raw))
        delivery_id = int(request.headers["X-Otklik-Delivery"])
        self.got.append(Received(request.headers["X-Otklik-Event"], delivery_id,
                                 json.loads(raw), signed, raw, dict(request.headers)))
        await asyncio.sleep(self.delay)
        if delivery_id in self.fail_once:
            self.fail_once.discard(delivery_id)
            return web.Response(status=503)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/otklik", self.handle)
        return app

    def delivered(self) -> list[tuple[int, str]]:
        """What was taken, in order, each once (a retried POST that failed is not)."""
        seen: list[tuple[int, str]] = []
        for item in self.got:
            if (item.delivery, item.event) not in seen:
                seen.append((item.delivery, item.event))
        return seen


@dataclass
class World:
    api: Api
    receiver: Receiver
    server: TestServer
    sender: WebhookSender

    async def outbox(self) -> list[OutboxRow]:
        async with self.api.services.factory() as session:
            return list(await session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


@asynccontextmanager
async def world(db_url: str, **overrides: Any) -> AsyncIterator[World]:
    receiver = Receiver()
    server = TestServer(receiver.app())
    await server.start_server()
    url = str(server.make_url("/hooks/otklik"))
    async with serving(db_url, outbound_webhook_url=url,
                       outbound_webhook_secret=SecretStr(SECRET), **overrides) as api:
        sender = WebhookSender(Database(api.services.factory), url, SECRET.encode(),
                               clock=api.clock, rng=random.Random(7),
                               instruments=api.services.instruments)
        try:
            yield World(api, receiver, server, sender)
        finally:
            await sender.close()
            await server.close()


async def answer_nps(api: Api, key: str, score: int, comment: str, **customer: Any) -> None:
    """A customer answers the NPS survey on its page: a score, then a comment."""
    token = await delivery(api, key, **customer)
    _, html, _ = await page(api, f"/s/{token}")
    await submit(api, f"/s/{token}", html, answer=str(score))
    _, html, _ = await page(api, f"/s/{token}")
    await submit(api, f"/s/{token}", html, text=comment)


async def test_events_are_signed_and_a_failed_post_is_retried(db_url: str) -> None:
    async with world(db_url) as w:
        await answer_nps(w.api, "k1", 3, "Nobody called back")
        w.receiver.statuses = [500]

        assert await w.sender.tick() == 0  # 500: the first event waits, and the rest behind it
        [first] = w.receiver.got
        assert first.event == "answer.created"
        failed = (await w.outbox())[0]
        assert (failed.attempts, failed.last_error, failed.delivered_at) == (1, "HTTP 500", None)
        assert 8 <= (failed.due_at - w.api.clock.now).total_seconds() <= 10

        w.api.clock.advance(seconds=5)
        assert await w.sender.tick() == 0  # not due yet
        assert len(w.receiver.got) == 1
        w.api.clock.advance(seconds=6)
        assert await w.sender.tick() == 4
        rows = await w.outbox()

    assert all(row.delivered_at is not None for row in rows)
    got = w.receiver.got
    assert all(item.signed for item in got)
    assert [(item.delivery, item.event) for item in got] == [
        (first.delivery, "answer.created"), (first.delivery, "answer.created"),
        (first.delivery + 1, "alert.raised"), (first.delivery + 2, "answer.created"),
        (first.delivery + 3, "session.completed")]
    score, alert, comment, completed = (item.body for item in got[1:])
    assert score["event"] == "answer.created"
    assert score["id"] == first.delivery
    assert score["data"]["metric"] == "nps"
    assert score["data"]["score"] == 3
    assert score["data"]["customer"] == {"external_id": "crm-42"}
    assert score["data"]["context"] == {"agent_name": "Anna", "call_type": "support"}
    assert score["data"]["channel"] == "web"
    assert alert["data"]["alert_id"] is not None
    assert alert["data"]["answer_id"] == score["data"]["answer_id"]
    assert comment["data"]["text"] == "Nobody called back"
    assert comment["data"]["step_id"] == "reason"
    assert completed["data"]["session_id"] == score["data"]["session_id"]
    assert completed["data"]["delivery_id"] == score["data"]["delivery_id"] is not None


async def test_the_signature_covers_the_timestamp_and_the_raw_body(db_url: str) -> None:
    async with world(db_url) as w:
        await answer_nps(w.api, "k1", 9, "Fine")
        assert await w.sender.tick() == 3
        rows = await w.outbox()
    assert all(row.delivered_at is not None for row in rows)
    item = w.receiver.got[0]
    stamp, sent = item.headers["X-Otklik-Timestamp"], item.headers["X-Otklik-Signature"]
    assert int(stamp) == int(w.api.clock.now.timestamp())
    assert item.headers["Content-Type"] == "application/json"
    assert sent == signature(SECRET.encode(), stamp, item.raw)
    # What a receiver must refuse: another secret, a replayed body under a new timestamp,
    # a body changed on the way.
    assert sent != signature(b"another secret", stamp, item.raw)
    assert sent != signature(SECRET.encode(), str(int(stamp) + 1), item.raw)
    assert b'"score":9' in item.raw
    assert sent != signature(SECRET.encode(), stamp, item.raw.replace(b'"score":9',
                                                                      b'"score":10'))


async def test_one_customers_events_keep_their_order_under_retries(db_url: str) -> None:
    async with world(db_url) as w:
        await answer_nps(w.api, "a", 9, "Great", external_id="crm-a", telegram_id=1)
        await answer_nps(w.api, "b", 2, "Slow", external_id="crm-b", telegram_id=2)
        rows = await w.outbox()
        of = {key: [row.id for row in rows if row.key == key] for key in {r.key for r in rows}}
        a, b = sorted(of.values())  # customer a's events came first
        w.receiver.fail_once = {a[1], b[0]}  # a's second event, b's first

        assert await w.sender.tick() == 1  # a's first; then a and b each wait behind a failure
        assert sorted(d for d, _ in w.receiver.delivered()) == sorted([a[0], a[1], b[0]])
        for _ in range(3):
            w.api.clock.advance(seconds=10)
            await w.sender.tick()
        rows = await w.outbox()

    assert all(row.delivered_at is not None for row in rows)
    taken = [item.delivery for item in w.receiver.got]
    for key_ids in (a, b):  # each customer's events were first sent in id order
        firsts = [d for i, d in enumerate(taken) if d in key_ids and d not in taken[:i]]
        assert firsts == key_ids
    # Nothing of a customer went before its earlier event was taken.
    for key_ids in (a, b):
        for earlier, later in itertools.pairwise(key_ids):
            last_try_of_earlier = max(i for i, d in enumerate(taken) if d == earlier)
            assert taken.index(later) > last_try_of_earlier


async def test_a_receiver_down_for_an_hour_gets_everything_later_in_order(
        db_url: str) -> None:
    async with world(db_url) as w:
        port = w.server.port
        await w.server.close()  # the receiver is down: connections are refused
        await answer_nps(w.api, "k1", 9, "Good")
        for minute in range(60):
            if minute == 30:  # another customer answers meanwhile
                await answer_nps(w.api, "k2", 10, "Even better", external_id="crm-42b",
                                 telegram_id=43)
            await w.sender.tick()
            w.api.clock.advance(minutes=1)
        rows = await w.outbox()
        tries = rows[0].attempts
        assert 5 <= tries <= 10  # 10 s doubling: retried all along, more sparsely
        assert rows[0].last_error == "ClientConnectorError"
        assert all(row.delivered_at is None for row in rows)
        assert w.receiver.got == []

        w.server = TestServer(w.receiver.app(), port=port)  # back up
        await w.server.start_server()
        w.api.clock.advance(hours=1)  # the longest wait between attempts
        assert await w.sender.tick() == len(rows)
        assert sorted(d for d, _ in w.receiver.delivered()) == [row.id for row in rows]
        for key in {row.key for row in rows}:  # each customer's in the order they happened
            ids = [row.id for row in rows if row.key == key]
            assert [d for d, _ in w.receiver.delivered() if d in ids] == ids
        assert all(item.signed for item in w.receiver.got)


async def test_two_senders_at_once_never_send_an_event_twice(db_url: str) -> None:
    async with world(db_url) as w:
        for n in range(6):
            await answer_nps(w.api, f"k{n}", 8, "ok", external_id=f"crm-{n}",
                             telegram_id=100 + n)
        w.receiver.delay = 0.02
        other = WebhookSender(Database(w.api.services.factory),
                              str(w.server.make_url("/hooks/otklik")), SECRET.encode(),
                              clock=w.api.clock, batch=2)
        try:
            done = await asyncio.gather(w.sender.tick(), other.tick())
        finally:
            await other.close()
        rows = await w.outbox()
    assert sum(done) == len(rows) == 18
    assert sorted(item.delivery for item in w.receiver.got) == [row.id for row in rows]


async def test_delivered_events_are_forgotten_after_a_week(db_url: str) -> None:
    async with world(db_url) as w:
        await answer_nps(w.api, "k1", 9, "Good")
        await w.sender.tick()
        w.api.clock.advance(days=6)
        assert await w.sender.prune() == 0
        w.api.clock.advance(days=2)
        assert await w.sender.prune() == 3
        assert await w.outbox() == []


async def test_nothing_is_queued_without_an_outbound_webhook(db_url: str) -> None:
    async with serving(db_url) as api:
        await answer_nps(api, "k1", 2, "Bad")
        async with api.services.factory() as session:
            answers = await session.scalar(select(func.count()).select_from(AnswerRow))
            queued = await session.scalar(select(func.count()).select_from(OutboxRow))
    assert (answers, queued) == (2, 0)


class _Undone(Exception):
    """An error after the turn was recorded, in its transaction."""


@pytest.mark.parametrize("commit", [False, True])
async def test_events_share_the_fate_of_their_transaction(engine: Any, commit: bool) -> None:
    factory = session_factory(engine, outbox=True)
    script = csat_script()
    await store(factory, script)
    dialogue = await begin(factory, script)
    inside: list[int] = []

    def turn(repositories: Store) -> None:
        row = repositories.dialogues.get(dialogue.id)
        assert row is not None
        record(repositories, row, advance(script, row.dialogue_state(), Reply.typed("1"), NOW),
               NOW, script.timezone)
        inside.append(repositories.outbox.pending())
        if not commit:
            raise _Undone

    with contextlib.suppress(_Undone):
        await Database(factory).write(turn)
    async with factory() as session:
        events = list(await session.scalars(select(OutboxRow.event).order_by(OutboxRow.id)))
    assert inside == [2]
    assert events == (["answer.created", "alert.raised"] if commit else [])


def _run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
           "SURVEYS_DIR": str(SURVEYS), "ADMIN_TOKEN": "run-admin-token",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # this checkout's code
           **extra}
    for name in {"BOT_TOKEN", "SMTP_URL", "OUTBOUND_WEBHOOK_SECRET"} - extra.keys():
        env.pop(name, None)
    return env


async def test_otklik_run_sends_the_events_and_logs_json(tmp_path: Path) -> None:
    """The real process: its scheduler sends a web answer's event to the receiver."""
    receiver = Receiver()
    server = TestServer(receiver.app())
    await server.start_server()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = _run_env(tmp_path, HTTP_PORT=str(port), LOG_FORMAT="json", LOG_LEVEL="DEBUG",
                   OUTBOUND_WEBHOOK_URL=str(server.make_url("/hooks/otklik")),
                   OUTBOUND_WEBHOOK_SECRET=SECRET)
    process = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            for _ in range(150):
                try:
                    async with client.get(f"{base}/healthz"):
                        break
                except aiohttp.ClientConnectionError:
                    assert process.poll() is None, "otklik run exited early"
                    await asyncio.sleep(0.2)
            async with client.get(f"{base}/w/nps") as response:  # the anonymous survey
                html = await response.text()
            async with client.post(f"{base}/w/nps", data={**form_of(html), "answer": "9"},
                                   allow_redirects=False) as response:
                assert response.status == 303
            for _ in range(100):
                if receiver.got:
                    break
                await asyncio.sleep(0.1)
            async with client.get(f"{base}/metrics", headers={
                    "Authorization": "Bearer run-admin-token"}) as response:
                metrics = await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        await server.close()
    assert process.returncode == 0, output
    [event] = receiver.got
    assert (event.event, event.signed, event.body["data"]["score"]) == ("answer.created",
                                                                        True, 9)
    assert 'otklik_webhook_attempts_total{result="delivered"} 1.0' in metrics
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert any(r["message"].startswith("serving on") for r in records)
    assert "run-admin-token" not in output
    assert SECRET not in output


def test_otklik_run_refuses_a_webhook_url_without_its_secret(tmp_path: Path) -> None:
    env = _run_env(tmp_path, OUTBOUND_WEBHOOK_URL="https://example.org/hooks")
    result = subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env,
                            text=True, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "OUTBOUND_WEBHOOK_SECRET is required" in result.stderr
