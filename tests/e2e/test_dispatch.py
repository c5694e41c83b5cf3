"""Deliveries going out by themselves: trigger -> due after the delay -> the first question
at the (loopback) Bot API, on SQLite and PostgreSQL, with the services on a clock the test
moves; Telegram's 429, 403, 5xx and unknown chats; fallback, reminders, expiry, recovery of
a send that a dead process left half done; the real scheduler driving it all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.scheduler import build_scheduler
from bot.services.dispatch import DeliveryDispatcher, Job, Sender
from bot.services.scripts import load_scripts
from handlers.telegram.channel import TelegramChannel
from storage.models import CustomerRow, DeliveryRow, DialogueRow, IdentityRow, OutboxRow
from storage.uow import Database
from testkit.botapi import BotApiStub
from tests.e2e.telegram_support import Product
from tests.e2e.test_web_pages import choose, page
from tests.e2e.trigger_support import Api, serving, trigger

CHAT = 4242


@dataclass
class FakeMail:
    """A second channel that records what it was asked to send."""

    jobs: list[Job] = field(default_factory=list)

    async def send(self, job: Job) -> str | None:
        self.jobs.append(job)
        return f"<{job.delivery_id}@mail>"


@dataclass
class World:
    api: Api
    stub: BotApiStub
    customer: Product  # the Telegram side that takes the customer's replies
    dispatcher: DeliveryDispatcher
    mail: FakeMail

    async def delivery(self, delivery_id: int) -> DeliveryRow:
        async with self.api.services.factory() as session:
            row = await session.get(DeliveryRow, delivery_id)
        assert row is not None
        return row

    async def identity(self, channel: str = "telegram") -> IdentityRow:
        async with self.api.services.factory() as session:
            row = await session.scalar(select(IdentityRow).filter_by(channel=channel))
        assert row is not None
        return row

    def questions(self, chat: int = CHAT) -> list[str]:
        return [params["text"] for params in self.stub.sent(chat)]


@asynccontextmanager
async def world(db_url: str, *, mail: bool = False, **overrides: Any) -> AsyncIterator[World]:
    """The process as `otklik run` builds it, with a dispatcher of the test's own: its
    Telegram sender, and a fake second channel when `mail`."""
    channels = ("telegram", "email") if mail else None
    async with BotApiStub() as stub, serving(db_url, channels=channels, telegram=True,
                                             telegram_api_base=stub.base_url,
                                             telegram_chat_rate=1000.0, **overrides) as api:
        assert api.product is not None
        assert api.product.telegram is not None
        fake_mail = FakeMail()
        tg = api.product.telegram
        senders: dict[str, Sender] = {"telegram": TelegramChannel(tg.sender, tg.i18n)}
        if mail:  # a second channel, as the e-mail sender will be
            senders["email"] = fake_mail
        dispatcher = DeliveryDispatcher(api.services.db, senders, clock=api.clock,
                                        scripts=api.services.scripts, attempts=3,
                                        backoff=timedelta(seconds=30))
        yield World(api, stub, Product(stub, api.product), dispatcher, fake_mail)


async def test_a_trigger_is_sent_when_due_and_answered_in_telegram(db_url: str) -> None:
    async with world(db_url) as w:
        _, accepted = await w.api.post("/api/v1/triggers", trigger())
        assert await w.dispatcher.tick() == 0  # due in 15 minutes
        assert w.stub.calls_of("sendMessage") == []
        w.api.clock.advance(minutes=15)
        assert await w.dispatcher.tick() == 1
        [question] = w.questions()
        assert "Anna" in question  # the trigger's context fills the placeholder
        delivery = await w.delivery(accepted["delivery_id"])
        sent_at = w.api.clock.now
        assert (delivery.status, delivery.sent_channel) == ("sent", "telegram")
        assert delivery.message_id == str(w.stub.messages(CHAT)[-1]["message_id"])
        assert delivery.remind_at == sent_at + timedelta(hours=4)
        assert delivery.expires_at == sent_at + timedelta(hours=24)
        assert await w.dispatcher.tick() == 0  # sent once

        await w.customer.tap(CHAT, "5")  # the customer answers in the same chat
        assert (await w.delivery(accepted["delivery_id"])).status == "answered"
        assert await w.customer.answers() == [("csat", 5, None, None)]
        await w.customer.tap(CHAT, "Да")  # "was it resolved?" (the script speaks Russian)
        assert (await w.delivery(accepted["delivery_id"])).status == "completed"


async def test_the_real_scheduler_sends_once_the_clock_reaches_the_due_time(
        db_url: str) -> None:
    async with world(db_url) as w:
        scheduler = build_scheduler(w.dispatcher, w.api.services.campaigns,
                                    w.api.services.db, interval=0.05)
        scheduler.start()
        try:
            await w.api.post("/api/v1/triggers", {**trigger(), "delay": "PT1H"})
            await asyncio.sleep(0.3)  # several ticks: nothing due yet
            assert w.stub.calls_of("sendMessage") == []
            w.api.clock.advance(hours=1)
            await w.stub.wait_for(lambda: len(w.questions()) == 1)
            await asyncio.sleep(0.3)
            assert len(w.questions()) == 1
        finally:
            scheduler.shutdown(wait=False)


async def test_429_pauses_and_the_delivery_is_sent_later_once(db_url: str) -> None:
    async with world(db_url) as w:
        _, accepted = await w.api.post("/api/v1/triggers", {**trigger(), "delay": "PT0S"})
        w.stub.fail("sendMessage", status=429, retry_after=2)
        await w.dispatcher.tick()
        delivery = await w.delivery(accepted["delivery_id"])
        assert (delivery.status, delivery.attempts) == ("scheduled", 1)
        assert "429" in (delivery.last_error or "")
        assert delivery.due_at == w.api.clock.now + timedelta(seconds=30)  # >= retry_after
        w.api.clock.advance(seconds=30)
        await w.dispatcher.tick()
        assert len(w.questions()) == 1
        assert (await w.delivery(accepted["delivery_id"])).status == "sent"


async def test_the_limiter_waits_retry_after_before_any_other_send(db_url: str) -> None:
    async with world(db_url, telegram_rate=1.0) as w:  # the second slot comes at 1 s
        for n in range(2):
            await w.api.post("/api/v1/triggers", {**trigger(f"k{n}", external_id=f"c{n}",
                                                           telegram_id=100 + n),
                                                  "delay": "PT0S"})
        w.stub.fail("sendMessage", status=429, retry_after=2, chat_id=100)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await w.dispatcher.tick()
        # the second chat's message waited for the 2 s Telegram asked, not just its slot
        ok = [c for c in w.stub.calls_of("sendMessage") if c.ok]
        assert [c.params["chat_id"] for c in ok] == [101]
        assert loop.time() - began >= 1.9


async def test_403_marks_the_chat_blocked_and_falls_back_to_the_next_channel(
        db_url: str) -> None:
    async with world(db_url, mail=True) as w:
        _, accepted = await w.api.post("/api/v1/triggers", {
            **trigger(email="anna@example.com"), "delay": "PT0S"})
        w.stub.fail("sendMessage", status=403, chat_id=CHAT,
                    description="Forbidden: bot was blocked by the user")
        await w.dispatcher.tick()
        identity = await w.identity()
        assert (identity.reachable, identity.unreachable_reason) == (False, "blocked")
        # not failed: put back at once, and taken by the same tick through e-mail
        delivery = await w.delivery(accepted["delivery_id"])
        assert (delivery.status, delivery.sent_channel) == ("sent", "email")
        assert delivery.last_error is None
        [job] = w.mail.jobs
        assert (job.address, job.token) == ("anna@example.com", delivery.token)
        assert job.prompts  # the first question, for the invitation
        # a later survey does not try the blocked chat again
        w.api.clock.advance(days=40)
        _, second = await w.api.post("/api/v1/triggers", {**trigger("call-2"),
                                                          "delay": "PT0S"})
        await w.dispatcher.tick()
        assert (await w.delivery(second["delivery_id"])).sent_channel == "email"
        assert len([c for c in w.stub.calls_of("sendMessage") if c.ok]) == 0


async def test_a_chat_that_never_opened_the_bot_fails_with_no_channel(db_url: str) -> None:
    async with world(db_url) as w:
        _, accepted = await w.api.post("/api/v1/triggers", {**trigger(), "delay": "PT0S"})
        w.stub.fail("sendMessage", status=400, chat_id=CHAT,
                    description="Bad Request: chat not found")
        await w.dispatcher.tick()
        await w.dispatcher.tick()
        delivery = await w.delivery(accepted["delivery_id"])
        assert (delivery.status, delivery.reason) == ("failed", "no_channel")
        assert (await w.identity()).unreachable_reason == "no_chat"
        async with w.api.services.factory() as session:
            statuses = list(await session.scalars(select(DialogueRow.status)))
        assert statuses == ["abandoned"]


async def test_server_errors_are_retried_with_backoff_then_fail(db_url: str) -> None:
    async with world(db_url) as w:
        _, accepted = await w.api.post("/api/v1/triggers", {**trigger(), "delay": "PT0S"})
        w.stub.fail("sendMessage", status=502, times=None)
        waits = []
        for _ in range(3):
            before = w.api.clock.now
            await w.dispatcher.tick()
            delivery = await w.delivery(accepted["delivery_id"])
            if delivery.status == "scheduled":
                waits.append(delivery.due_at - before)
                w.api.clock.now = delivery.due_at
        assert waits == [timedelta(seconds=30), timedelta(seconds=60)]  # doubling
        assert (delivery.status, delivery.reason, delivery.attempts) == (
            "failed", "send_failed", 3)
        w.stub.clear_faults()
        w.api.clock.advance(hours=1)
        await w.dispatcher.tick()
        assert w.questions() == []  # failed stays failed


async def test_a_customer_who_opted_out_after_the_trigger_is_not_sent_to(
        db_url: str) -> None:
    async with world(db_url) as w:
        _, accepted = await w.api.post("/api/v1/triggers", trigger())
        async with w.api.services.factory() as session:
            await session.execute(update(CustomerRow).values(opted_out_at=w.api.clock.now))
            await session.commit()
        w.api.clock.advance(minutes=15)
        await w.dispatcher.tick()
        delivery = await w.delivery(accepted["delivery_id"])
        assert (delivery.status, delivery.reason) == ("suppressed", "opted_out")
        assert w.questions() == []


async def test_a_reminder_goes_once_and_not_to_who_answered(db_url: str) -> None:
    async with world(db_url) as w:
        for n, chat in enumerate((CHAT, 77)):
            await w.api.post("/api/v1/triggers", {**trigger(f"k{n}", external_id=f"c{n}",
                                                           telegram_id=chat),
                                                  "delay": "PT0S"})
        await w.dispatcher.tick()
        await w.customer.tap(77, "4")  # chat 77 answers
        w.api.clock.advance(hours=3)
        assert await w.dispatcher.remind() == 0
        w.api.clock.advance(hours=1)
        assert await w.dispatcher.remind() == 1
        texts = w.questions()
        assert len(texts) == 3
        assert texts[1].startswith("Напоминаем")  # in the dialogue's language
        assert texts[2] == texts[0]  # the open question again, with its buttons
        w.api.clock.advance(hours=5)
        assert await w.dispatcher.remind() == 0
        assert len(w.questions()) == 3
        await w.customer.tap(CHAT, "5")  # the reminded customer answers on the new keyboard
        assert [a[:2] for a in await w.customer.answers()] == [("csat", 4), ("csat", 5)]


async def test_expiry_closes_the_dialogue_and_a_late_reply_is_told_so(db_url: str) -> None:
    async with world(db_url) as w:
        _, accepted = await w.api.post("/api/v1/triggers", {**trigger(), "delay": "PT0S"})
        await w.dispatcher.tick()
        w.api.clock.advance(hours=24)
        assert await w.dispatcher.expire() == 1
        assert (await w.delivery(accepted["delivery_id"])).status == "expired"
        await w.customer.send(CHAT, "5")
        assert "closed" in w.customer.texts(CHAT)[-1]
        assert await w.customer.answers() == []
        await w.customer.tap(CHAT, "5")  # the old keyboard too
        assert await w.customer.answers() == []


async def test_a_send_left_half_done_by_a_dead_process_is_recovered_once(
        db_url: str) -> None:
    async with world(db_url) as w:
        _, first = await w.api.post("/api/v1/triggers", {**trigger("a"), "delay": "PT0S"})
        _, second = await w.api.post("/api/v1/triggers", {
            **trigger("b", external_id="other", telegram_id=99), "delay": "PT0S"})
        # A process claims both, then dies: one before sending, one after sending but
        # before recording anything but the message id.
        claimed = await Database(w.api.services.factory).write(
            lambda store: store.deliveries.claim_due(w.api.clock.now, 10))
        assert len(claimed) == 2
        async with w.api.services.factory() as session:
            await session.execute(update(DeliveryRow)
                                  .where(DeliveryRow.id == second["delivery_id"])
                                  .values(message_id="17"))
            await session.commit()
        await w.dispatcher.tick()
        assert w.questions() == []  # still inside the sending timeout
        w.api.clock.advance(minutes=6)
        await w.dispatcher.tick()
        assert len(w.questions(CHAT)) == 1
        assert w.questions(99) == []  # its message had gone out: not sent twice
        assert (await w.delivery(first["delivery_id"])).status == "sent"
        assert (await w.delivery(second["delivery_id"])).status == "sent"


@pytest.mark.parametrize("concurrent", [2, 4])
async def test_concurrent_ticks_never_send_one_delivery_twice(db_url: str,
                                                              concurrent: int) -> None:
    async with world(db_url, telegram_rate=10_000.0) as w:
        for n in range(60):
            await w.api.post("/api/v1/triggers", {
                **trigger(f"k{n}", external_id=f"c{n}", telegram_id=1000 + n),
                "delay": "PT0S"})
        counts = await asyncio.gather(*(w.dispatcher.tick() for _ in range(concurrent)))
        assert sum(counts) == 60
        chats = [c.params["chat_id"] for c in w.stub.calls_of("sendMessage") if c.ok]
        assert sorted(chats) == [1000 + n for n in range(60)]


async def test_two_surveys_due_together_for_one_chat_go_one_after_the_other(
        db_url: str) -> None:
    async with world(db_url) as w:
        _, first = await w.api.post("/api/v1/triggers", {**trigger("a"), "delay": "PT0S"})
        _, second = await w.api.post("/api/v1/triggers", {**trigger("b", survey="nps"),
                                                          "delay": "PT0S"})
        await w.dispatcher.tick()
        assert len(w.questions()) == 1  # one dialogue open in the chat, not two
        async with w.api.services.factory() as session:
            active = list(await session.scalars(
                select(DialogueRow).filter_by(status="active")))
        assert len(active) == 1
        later = await w.delivery(second["delivery_id"])
        assert (later.status, later.due_at) == ("scheduled",
                                                w.api.clock.now + timedelta(minutes=10))
        assert (await w.delivery(first["delivery_id"])).status == "sent"
        w.api.clock.advance(minutes=10)
        await w.dispatcher.tick()
        assert len(w.questions()) == 2
        assert (await w.delivery(second["delivery_id"])).status == "sent"


NOTICE = """
id: notice
default_locale: en
title: {en: Notice}
steps:
  - id: hello
    type: message
    text: {en: "Your repair is done: thank you from {context.agent_name}."}
"""


async def test_a_survey_of_messages_only_is_completed_when_sent_as_any_opened_dialogue_is(
        db_url: str, tmp_path: Path) -> None:
    """The dispatcher opens a dialogue the way a customer's message does (one lifecycle):
    a script of messages only ends as it starts, recorded completed with its webhook event,
    not left as a row the dispatcher wrote on its own."""
    (tmp_path / "notice.yaml").write_text(NOTICE)
    async with world(db_url, outbound_webhook_url="http://127.0.0.1:9/hooks",
                     outbound_webhook_secret="s" * 32) as w:
        await load_scripts(w.api.services.db, [tmp_path / "notice.yaml"], actor="test",
                           now=w.api.clock.now)
        _, accepted = await w.api.post("/api/v1/triggers",
                                       {**trigger(survey="notice"), "delay": "PT0S"})
        assert await w.dispatcher.tick() == 1
        assert w.questions() == ["Your repair is done: thank you from Anna."]
        async with w.api.services.factory() as session:
            dialogue = await session.scalar(select(DialogueRow))
            events = list(await session.scalars(select(OutboxRow.event)))
        assert dialogue is not None
        assert (dialogue.status, dialogue.respondent) == ("completed", "known")
        assert dialogue.completed_at is not None
        assert events == ["session.completed"]
        delivery = await w.delivery(accepted["delivery_id"])
        # Sent and done at once: nothing to remind of or expire.
        assert (delivery.status, delivery.sent_channel) == ("completed", "telegram")
        assert (delivery.remind_at, delivery.expires_at) == (None, None)
        assert delivery.message_id is not None


async def test_a_link_delivery_sends_nothing_and_its_page_takes_the_answer(db_url: str) -> None:
    """`channel: link`: the delivery is sent as it is made, to nobody, for a customer with no
    address at all; its survey_url is the caller's to hand on. No send, no reminder, no
    quiet hours (23:00 there); the page opens the survey and takes the answer; opting out
    still suppresses it."""
    async with world(db_url, mail=True) as w:
        w.api.clock.advance(hours=11)  # 23:00 UTC: inside the script's quiet hours
        link = {**trigger(), "channel": "link", "customer": {"external_id": "walk-in"}}
        status, body = await w.api.post("/api/v1/triggers", link)
        assert (status, body["status"], body["reason"]) == (202, "sent", None)
        delivery = await w.delivery(body["delivery_id"])
        now = w.api.clock.now
        assert (delivery.channel, delivery.sent_channel, delivery.status) == (
            "link", "link", "sent")
        assert (delivery.sent_at, delivery.due_at, delivery.remind_at, delivery.expires_at) == (
            now, now, None, now + timedelta(hours=24))
        assert body["survey_url"] == f"{w.api.services.links.base_url}/s/{delivery.token}"

        w.api.clock.advance(hours=5)  # past any delay, quiet hours and reminder time
        assert (await w.dispatcher.tick(), await w.dispatcher.remind()) == (0, 0)
        assert (w.stub.calls_of("sendMessage"), w.mail.jobs) == ([], [])
        link_page = f"/s/{delivery.token}"
        status, html, _ = await page(w.api, link_page)
        assert status == 200
        assert "How would you rate your call with Anna?" in html
        assert await choose(w.api, link_page, "5") == 303
        assert (await w.delivery(body["delivery_id"])).status == "answered"

        async with w.api.services.factory() as session:
            await session.execute(update(CustomerRow).values(opted_out_at=w.api.clock.now))
            await session.commit()
        status, body = await w.api.post("/api/v1/triggers", {**link, "idempotency_key": "2"})
        assert (status, body["status"], body["reason"], body["survey_url"]) == (
            202, "suppressed", "opted_out", None)
