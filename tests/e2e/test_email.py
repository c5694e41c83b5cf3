"""The e-mail channel against a real SMTP server in the test process (aiosmtpd): the
invitation arrives in HTML and plain text, its links work, a score link opens the page with
that score chosen and Send records it, the unsubscribe link opts out; a refused address
falls back to the next channel; and a customer who starts by e-mail finishes in Telegram,
in one dialogue."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiohttp import ClientResponse, ClientSession
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bot.services.dispatch import DeliveryDispatcher, Sender
from handlers.email.channel import EmailChannel, Smtp
from handlers.telegram.channel import TelegramChannel
from storage.models import AnswerRow, CustomerRow, DeliveryRow, DialogueRow, IdentityRow
from testkit.botapi import BOT_USERNAME, BotApiStub
from testkit.net import free_port
from testkit.smtp import Mailbox
from tests.e2e.telegram_support import Product
from tests.e2e.trigger_support import Api, serving, trigger

REFUSED = "nobody@example.com"
CHAT = 4242
SCORE_LINK = re.compile(r"https?://\S+/e/[\w-]+/\d+")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CHOSEN = re.compile(r'name="answer-1" value="(\d+)"[^>]*\bchecked\b')
FOLLOW = re.compile(r'name="follow" value="(\d+)"')


@dataclass
class World:
    api: Api
    stub: BotApiStub
    mailbox: Mailbox
    dispatcher: DeliveryDispatcher
    customer: Product

    def path(self, url: str) -> str:
        return url.removeprefix(self.api.services.links.base_url)


@asynccontextmanager
async def world(db_url: str, *, smtp_port: int | None = None, **settings: Any
                ) -> AsyncIterator[World]:
    """The product serving on loopback with Telegram and e-mail; `settings` as serving's."""
    mailbox = Mailbox(refused={REFUSED})
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    port = smtp_port or controller.port
    try:
        async with BotApiStub() as stub, serving(
                db_url, channels=("telegram", "email"), telegram=True,
                telegram_api_base=stub.base_url, telegram_chat_rate=1000.0,
                smtp_url=f"smtp://127.0.0.1:{port}",
                **{"mail_from": "Otklik <survey@example.com>", **settings}) as api:
            assert api.product is not None
            assert api.product.telegram is not None
            tg = api.product.telegram
            # The process's senders, the e-mail one with a shorter timeout for the tests.
            senders: dict[str, Sender] = {
                "telegram": TelegramChannel(tg.sender, tg.i18n),
                "email": EmailChannel(Smtp.from_url(f"smtp://127.0.0.1:{port}"),
                                     api.settings.mail_from, api.services.links, timeout=5)}
            dispatcher = DeliveryDispatcher(api.services.db, senders, clock=api.clock,
                                            scripts=api.services.scripts, attempts=3)
            yield World(api, stub, mailbox, dispatcher, Product(stub, api.product))
    finally:
        controller.stop()


def by_email(address: str = "anna@example.com", **extra: Any) -> dict[str, Any]:
    body = trigger(survey="nps", email=address, **extra)
    body["customer"].pop("telegram_id")
    return {**body, "channel": "email", "delay": "PT0S"}


async def score_form(client: ClientSession, url: str, text: str = "") -> dict[str, str]:
    """A person on a score link of an e-mail: the page opens with that score chosen and the
    follow-up under it, where they type `text` (or nothing); the form Send would post."""
    page = await client.get(url)
    html = await page.text()
    assert page.status == 200, html
    csrf, chosen = CSRF.search(html), CHOSEN.search(html)
    assert csrf is not None
    assert chosen is not None
    form = {"csrf": csrf[1], "answer-1": chosen[1]}
    if (follow := FOLLOW.search(html)) is not None:
        form |= {"follow": follow[1], f"text-{follow[1]}": text}
    return form


async def send_score(client: ClientSession, url: str, text: str = "") -> ClientResponse:
    """score_form, sent."""
    form = await score_form(client, url, text)
    return await client.post(url, data=form, allow_redirects=False)


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


async def test_the_invitation_arrives_with_both_parts_and_its_links_work(db_url: str) -> None:
    async with world(db_url) as w:
        _, accepted = await w.api.post("/api/v1/triggers", by_email())
        await w.dispatcher.tick()
        [message] = w.mailbox.messages
        assert w.mailbox.recipients == ["anna@example.com"]
        assert message["Subject"] == "Net Promoter Score: one quick question"
        assert message["From"] == "Otklik <survey@example.com>"
        text, html = parts(message)
        assert "How likely are you to recommend us" in text
        assert "How likely are you to recommend us" in html
        links = SCORE_LINK.findall(text)
        assert len(links) == 11
        assert all(link in html for link in links)
        assert f"t.me/{BOT_USERNAME}?start=" in text
        unsubscribe = message["List-Unsubscribe"].strip("<>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert unsubscribe in text
        async with w.api.services.factory() as session:
            delivery = await session.get(DeliveryRow, accepted["delivery_id"])
        assert delivery is not None
        assert (delivery.status, delivery.sent_channel) == ("sent", "email")
        assert delivery.message_id == message["Message-ID"]

        eight = next(link for link in links if link.endswith("/8"))
        page = await w.api.client.get(w.path(eight), allow_redirects=False)
        assert page.status == 200  # the score chosen, the follow-up under it, nothing stored
        assert "main reason for your score" in await page.text()
        async with w.api.services.factory() as session:
            assert await session.scalar(select(AnswerRow)) is None
        sent = await send_score(w.api.client.session, str(w.api.client.make_url(w.path(eight))),
                                "Quick delivery")
        assert sent.status == 200
        assert "Thank you for your feedback!" in await sent.text()
        async with w.api.services.factory() as session:
            stored = list(await session.scalars(select(AnswerRow).order_by(AnswerRow.id)))
        assert [(a.step_id, a.score, a.text, a.channel) for a in stored] == [
            ("score", 8, None, "email"), ("reason", None, "Quick delivery", "email")]

        w.api.client.session.cookie_jar.clear()
        opt_out = await w.api.client.post(w.path(unsubscribe),
                                          data={"List-Unsubscribe": "One-Click"})
        assert opt_out.status == 200
        async with w.api.services.factory() as session:
            customer = await session.scalar(select(CustomerRow))
        assert customer is not None
        assert customer.opted_out_at is not None


async def test_the_invitation_is_in_the_customers_language(db_url: str) -> None:
    async with world(db_url) as w:
        await w.api.post("/api/v1/triggers", by_email(locale="ru"))
        await w.dispatcher.tick()
        [message] = w.mailbox.messages
        text, html = parts(message)
        assert message["Subject"].endswith("один короткий вопрос")
        assert "Выберите оценку" in text
        assert 'lang="ru"' in html


async def test_a_refused_address_is_a_hard_bounce_and_telegram_takes_over(
        db_url: str) -> None:
    async with world(db_url) as w:
        body = by_email(REFUSED)
        body["customer"]["telegram_id"] = CHAT
        _, accepted = await w.api.post("/api/v1/triggers", body)
        await w.dispatcher.tick()
        assert w.mailbox.messages == []
        async with w.api.services.factory() as session:
            identity = await session.scalar(select(IdentityRow).filter_by(channel="email"))
            delivery = await session.get(DeliveryRow, accepted["delivery_id"])
        assert identity is not None
        assert (identity.reachable, identity.unreachable_reason) == (False, "hard_bounce")
        assert delivery is not None
        assert (delivery.status, delivery.sent_channel) == ("sent", "telegram")
        assert len(w.stub.sent(CHAT)) == 1


async def test_an_unreachable_smtp_server_is_tried_again_later(db_url: str) -> None:
    async with world(db_url, smtp_port=free_port()) as w:  # nothing listens there
        _, accepted = await w.api.post("/api/v1/triggers", by_email())
        await w.dispatcher.tick()
        async with w.api.services.factory() as session:
            delivery = await session.get(DeliveryRow, accepted["delivery_id"])
        assert delivery is not None
        assert (delivery.status, delivery.attempts) == ("scheduled", 1)
        assert (delivery.last_error or "").startswith("SMTP:")


async def test_score_by_email_then_the_follow_up_in_telegram_is_one_dialogue(
        db_url: str) -> None:
    async with world(db_url) as w:
        await w.api.post("/api/v1/triggers", by_email())
        await w.dispatcher.tick()
        [message] = w.mailbox.messages
        text, _ = parts(message)
        three = next(link for link in SCORE_LINK.findall(text) if link.endswith("/3"))
        assert (await w.api.client.get(w.path(three), allow_redirects=False)).status == 200
        # The score link's page stores nothing: the score is sent on the e-mail's page link.
        page = re.search(r"Answer on the web: (\S+)", text)
        assert page is not None
        form = await w.api.client.get(w.path(page[1]))
        csrf = CSRF.search(await form.text())
        session = re.search(r'name="session" value="(\d+)"', await form.text())
        assert csrf is not None
        assert session is not None
        sent = await w.api.client.post(w.path(page[1]), data={
            "csrf": csrf[1], "session": session[1], "position": "1", "answer": "3"},
            allow_redirects=False)
        assert sent.status == 303
        token = re.search(r"start=([\w-]+)", text)
        assert token is not None
        await w.customer.send(CHAT, f"/start {token[1]}")  # the deep link, in Telegram
        assert "main reason for your score" in w.customer.texts(CHAT)[-1]
        await w.customer.send(CHAT, "The courier was late")
        async with w.api.services.factory() as db:
            rows = list(await db.scalars(select(AnswerRow).order_by(AnswerRow.id)))
            dialogues = list(await db.scalars(select(DialogueRow)))
        assert [(a.step_id, a.score, a.text, a.channel) for a in rows] == [
            ("score", 3, None, "email"), ("reason", None, "The courier was late", "telegram")]
        assert len(dialogues) == 1
        assert {a.session_id for a in rows} == {dialogues[0].id}
        assert dialogues[0].status == "completed"
