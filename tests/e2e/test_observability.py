"""Observability over real HTTP: /metrics (Prometheus text, behind ADMIN_TOKEN) whose
counters move with dialogues, sends and webhooks, a registry per application; and JSON
logs of a whole flow, at DEBUG, that carry no personal data and no secret."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.commands import QUIET, configure_logging
from bot.services.dispatch import ChannelClosed, DeliveryDispatcher, Job, TryLater
from bot.services.webhooks import WebhookSender
from storage.uow import Database
from tests.e2e import test_dispatch
from tests.e2e.test_webhooks import SECRET as OUTBOUND_SECRET
from tests.e2e.test_webhooks import Receiver, answer_nps
from tests.e2e.trigger_support import ADMIN, SECRET, TOKEN, Api, serving, trigger

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: Api, token: str | None = ADMIN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await api.client.get("/metrics", headers=headers)
    return response.status, await response.text()


async def samples(api: Api) -> Samples:
    status, text = await scrape(api)
    assert status == 200, text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_need_the_admin_token_when_one_is_set(db_url: str) -> None:
    async with serving(db_url) as api:
        assert (await scrape(api, None))[0] == 401
        status, text = await scrape(api, "wrong")
        assert status == 401
        assert json.loads(text)["error"]["field"] == "Authorization"
        status, text = await scrape(api)
        assert status == 200
        assert "otklik_answers_recorded" in text
    async with serving(db_url, admin_token=None) as api:
        assert (await scrape(api, None))[0] == 200


async def test_counters_move_with_a_dialogue_and_its_webhooks(db_url: str) -> None:
    receiver = Receiver()
    server = TestServer(receiver.app())
    await server.start_server()
    url = str(server.make_url("/hooks/otklik"))
    try:
        async with serving(db_url, outbound_webhook_url=url,
                           outbound_webhook_secret=SecretStr(OUTBOUND_SECRET)) as api, \
                serving(db_url) as other:
            before = await samples(api)
            assert value(before, "otklik_answers_recorded_total", channel="web",
                         metric="nps") == 0
            await answer_nps(api, "k1", 3, "Nobody called back")
            found = await samples(api)
            assert value(found, "otklik_answers_recorded_total", channel="web",
                         metric="nps") == 1
            assert value(found, "otklik_answers_recorded_total", channel="web",
                         metric="text") == 1
            assert value(found, "otklik_alerts_raised_total", channel="web") == 1
            assert value(found, "otklik_alerts", status="open") == 1
            assert value(found, "otklik_deliveries", status="completed") == 1
            assert value(found, "otklik_outbox_pending") == 4
            # The route's pattern is the label: the survey's token never is.
            pages = {status: value(found, "otklik_http_request_duration_seconds_count",
                                   method="POST", route="/s/{token}", status=status)
                     for status in ("2xx", "3xx", "4xx", "5xx")}
            # The score redirected (303) to the follow-up; the follow-up showed the thanks.
            assert pages == {"2xx": 1, "3xx": 1, "4xx": 0, "5xx": 0}
            assert value(found, "process_open_fds") > 0  # the standard collectors too
            labels = {v for (_, pairs) in found for _, v in pairs}
            assert not any(label.startswith("/s/") and label != "/s/{token}"
                           for label in labels)

            receiver.statuses = [500]
            sender = WebhookSender(Database(api.services.factory), url, OUTBOUND_SECRET.encode(),
                                   clock=api.clock, instruments=api.services.instruments)
            try:
                await sender.tick()
                api.clock.advance(seconds=11)
                await sender.tick()
            finally:
                await sender.close()
            found = await samples(api)
            assert value(found, "otklik_webhook_attempts_total", result="failed") == 1
            assert value(found, "otklik_webhook_attempts_total", result="delivered") == 4
            assert value(found, "otklik_outbox_pending") == 0

            # Another application over the same database: its own counters, the same gauges.
            elsewhere = await samples(other)
            assert value(elsewhere, "otklik_answers_recorded_total", channel="web",
                         metric="nps") == 0
            assert value(elsewhere, "otklik_alerts", status="open") == 1
    finally:
        await server.close()


class Refusing:
    """A channel that fails as told: transient first, then closed."""

    def __init__(self) -> None:
        self.errors: list[Exception] = [TryLater("Telegram: 429", 1), ChannelClosed("blocked")]

    async def send(self, job: Job) -> str | None:
        raise self.errors.pop(0)


async def test_send_errors_are_counted_by_channel_and_reason(db_url: str) -> None:
    async with serving(db_url) as api:
        dispatcher = DeliveryDispatcher(Database(api.services.factory), {"telegram": Refusing()},
                                        clock=api.clock, scripts=api.services.scripts,
                                        instruments=api.services.instruments,
                                        backoff=timedelta(seconds=30))
        await api.post("/api/v1/triggers", {**trigger(), "delay": "PT0S"})
        await dispatcher.tick()
        found = await samples(api)
        assert value(found, "otklik_send_errors_total", channel="telegram",
                     reason="transient") == 1
        api.clock.advance(minutes=1)
        await dispatcher.tick()
        found = await samples(api)
        assert value(found, "otklik_send_errors_total", channel="telegram",
                     reason="blocked") == 1
        assert value(found, "otklik_deliveries", status="failed") == 1  # no channel left


@contextmanager
def logs_to(stream: io.StringIO, settings: Any) -> Iterator[None]:
    """The process's logging as `otklik run` sets it up, into `stream`; as it was after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level
                                           for name in QUIET}
    configure_logging(settings, stream)
    # The test servers' access logs (the URL of /s/{token} is in them): `otklik run` serves
    # with access_log=None.
    access = logging.getLogger("aiohttp.access")
    access.disabled = True
    try:
        assert root.level == logging.getLevelName(settings.log_level)
        yield
    finally:
        access.disabled = False
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for name, each in levels.items():
            logging.getLogger(name).setLevel(each)


NAME, EMAIL, PHONE = "Ekaterina", "katya.private@example.org", "+79161234567"
COMMENT = "The courier opened my parcel"


async def test_json_logs_of_a_whole_flow_hold_no_personal_data_or_secrets(
        db_url: str) -> None:
    receiver = Receiver(statuses=[500])
    server = TestServer(receiver.app())
    await server.start_server()
    url = str(server.make_url("/hooks/otklik"))
    stream = io.StringIO()
    try:
        async with test_dispatch.world(
                db_url, outbound_webhook_url=url,
                outbound_webhook_secret=SecretStr(OUTBOUND_SECRET),
                log_level="DEBUG", log_format="json") as w:
            with logs_to(stream, w.api.settings):
                token = await flow(w, url)
    finally:
        await server.close()
    assert len(receiver.got) == 5  # one refused, then the four events

    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"INFO", "WARNING"} <= {record["level"] for record in records}
    assert any("not delivered: HTTP 500" in record["message"] for record in records)
    assert all({"time", "logger", "message"} <= record.keys() for record in records)
    text = stream.getvalue()
    for secret in (NAME, EMAIL, PHONE, COMMENT, token, ADMIN, SECRET,
                   OUTBOUND_SECRET, TOKEN.split(":")[1]):
        assert secret not in text, f"{secret!r} in the logs"
    said_what_happened(records)


def said_what_happened(records: list[dict[str, Any]]) -> None:
    """flow()'s story, told by the access log and the INFO lines, ids as JSON fields."""
    def of(logger: str, *keys: str) -> list[tuple[Any, ...]]:
        return [tuple(record[key] for key in keys) for record in records
                if record["logger"] == logger]

    access = of("otklik.access", "method", "route", "status")
    assert [entry for entry in access if entry[1] != "/telegram/webhook"] == [
        ("POST", "/api/v1/triggers", 202), ("POST", "/api/v1/triggers", 401),
        ("GET", "/metrics", 200), ("GET", "/s/{token}", 200)]
    assert all(isinstance(record["duration_ms"], float) for record in records
               if record["logger"] == "otklik.access")
    assert of("bot.services.triggers", "trigger_id", "delivery_id", "survey", "status") == [
        (1, 1, "nps", "scheduled")]
    assert of("bot.services.dispatch", "delivery_id", "channel", "status") == [
        (1, "telegram", "scheduled"), (1, "telegram", "sent")]  # a 429 first, then sent
    stored = of("bot.services.surveys", "answer_id", "dialogue_id", "survey", "step")
    assert [(answer, survey, step) for answer, _, survey, step in stored] == [
        (1, "nps", "score"), (2, "nps", "reason")]


async def test_text_logs_tell_the_same_story_in_lines(db_url: str) -> None:
    stream = io.StringIO()
    async with test_dispatch.world(db_url, log_level="INFO", log_format="text") as w:
        with logs_to(stream, w.api.settings):
            body = {**trigger("call-1", survey="nps"), "delay": "PT0S"}
            assert (await w.api.signed("/api/v1/triggers", body))[0] == 202
            await w.dispatcher.tick()
            await w.customer.tap(test_dispatch.CHAT, "9")
    lines = [line.split(" ", 3)[3] for line in stream.getvalue().splitlines()]
    assert "otklik.access: POST /api/v1/triggers 202" in [line.rsplit(" ", 2)[0]
                                                          for line in lines]
    assert "bot.services.triggers: trigger 1: delivery 1 scheduled" in lines
    assert "bot.services.dispatch: delivery 1 sent via telegram" in lines
    assert ("bot.services.surveys: answer 1 stored: dialogue 1, survey nps, step score, via "
            "telegram") in lines


async def flow(w: test_dispatch.World, url: str) -> str:
    """A signed trigger with contact details, the survey sent (after a 429) and answered
    in Telegram with a comment, its events delivered (after a 500), a scrape, the page;
    the survey's token."""
    api = w.api
    body = {**trigger("call-1", survey="nps", first_name=NAME, email=EMAIL, phone=PHONE),
            "delay": "PT0S"}
    status, _ = await api.signed("/api/v1/triggers", body)
    assert status == 202
    status, _ = await api.signed("/api/v1/triggers", body, secret="forged")
    assert status == 401
    w.stub.fail("sendMessage", status=429, retry_after=1)
    await w.dispatcher.tick()
    api.clock.advance(minutes=5)
    await w.dispatcher.tick()
    await w.customer.tap(test_dispatch.CHAT, "3")
    await w.customer.send(test_dispatch.CHAT, COMMENT, first_name=NAME)
    assert [a[3] for a in await w.customer.answers()] == [None, COMMENT]

    sender = WebhookSender(Database(api.services.factory), url, OUTBOUND_SECRET.encode(),
                           clock=api.clock, rng=random.Random(1),
                           instruments=api.services.instruments)
    try:
        await sender.tick()
        api.clock.advance(seconds=11)
        assert await sender.tick() == 4
    finally:
        await sender.close()
    assert (await scrape(api))[0] == 200
    [delivery] = await api.deliveries()
    assert delivery.token is not None
    response = await api.client.get(f"/s/{delivery.token}")
    assert response.status == 200
    return delivery.token


async def test_promtool_finds_nothing_to_fix_in_the_metrics(db_url: str) -> None:
    """Prometheus's own linter (Debian's prometheus package) on a scrape taken after a
    dialogue, its webhooks and a send error, so every family has samples."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    async with test_dispatch.world(db_url) as w:
        body = {**trigger("call-1", survey="nps"), "delay": "PT0S"}
        assert (await w.api.signed("/api/v1/triggers", body))[0] == 202
        await w.dispatcher.tick()
        await w.customer.tap(test_dispatch.CHAT, "3")
        status, text = await scrape(w.api)
    assert status == 200
    assert "otklik_answers_recorded_total" in text
    linted = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                            capture_output=True, timeout=60, check=False)
    assert (linted.returncode, linted.stdout, linted.stderr) == (0, "", "")
