"""One process with every channel on (`otklik run` as bot.bootstrap.build makes it, on a
SQLite file): Telegram in webhook mode against the Bot API stand-in, e-mail against a real
SMTP server (aiosmtpd), the web pages over real HTTP on loopback. A `Harness` per channel
plays the customer and the platform there in the same words, so that one suite
(test_contract.py) asks every channel the same questions.

A new channel adds its Harness here, its documented payloads under payloads/, and its
entry in HARNESSES: the suite then runs over it."""

from __future__ import annotations

import html as markup
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bot.bootstrap import CHANNELS
from bot.services.channels import Spec
from handlers.telegram.render import FACES, PICKED, UNPICKED
from storage.models import AnswerRow, CustomerRow, DeliveryRow, IdentityRow
from testkit import graphapi as graph_api
from testkit import smsc as smsc_api
from testkit import twilio as twilio_api
from testkit.botapi import BotApiStub, iter_buttons
from testkit.graphapi import GraphApiStub
from testkit.net import free_port
from testkit.smsc import SmscStub
from testkit.smtp import Mailbox
from testkit.twilio import TwilioStub
from tests.e2e.trigger_support import Api, serving, trigger

PAYLOADS = Path(__file__).with_name("payloads")
CHAT = 4242
EMAIL = "anna@example.com"
PHONE = "+4915112345678"
WA_ID = PHONE.removeprefix("+")  # the customer's WhatsApp id: their number's digits
APP_SECRET = "contract-whatsapp-app-secret"
WEBHOOK_SECRET = "contract-webhook-secret"
BOUNCE_SECRET = "contract-bounce-secret"
PUBLIC_URL = "http://otklik.example.com"  # where SMS providers post: Twilio signs it
SmsProvider = Literal["twilio", "smsc"]
FAILED_ATTEMPTS = 3  # wrong secrets a minute per address: the suite spends them on purpose
Refusal = Literal["closed", "later", "content"]
# What a platform may report after a send: the address is gone for good, a failure that
# does not close it, still trying, or delivered.
Report = Literal["failed_permanent", "failed_temporary", "delayed", "delivered"]
JSON = dict[str, Any]


def payload(path: str, **values: str | int) -> str:
    """A documented payload with its `{name}` placeholders filled in."""
    text = (PAYLOADS / path).read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    assert "{" + "payload}" not in text
    return text


@dataclass(frozen=True)
class Shown:
    """What the customer sees of a question: its text and the options one tap picks."""

    text: str
    options: tuple[str, ...]


@dataclass
class World:
    api: Api
    stub: BotApiStub
    mailbox: Mailbox
    webhook: str  # Telegram's webhook URL on the product's server
    graph: GraphApiStub
    sms: TwilioStub | SmscStub  # the one SMS provider configured

    async def tick(self) -> None:
        assert self.api.product is not None
        assert self.api.product.dispatcher is not None
        await self.api.product.dispatcher.tick()

    async def trigger(self, channel: str | None, key: str = "call-1",
                      survey: str = "nps") -> JSON:
        """A trigger for a customer every channel reaches, asking for `channel`."""
        body = {**trigger(key, survey=survey, email=EMAIL, telegram_id=CHAT, phone=PHONE),
                "delay": "PT0S"}
        if channel is not None:
            body["channel"] = channel
        status, accepted = await self.api.post("/api/v1/triggers", body)
        assert status == 202, accepted
        return accepted

    async def delivery(self, delivery_id: int) -> DeliveryRow:
        async with self.api.services.factory() as session:
            row = await session.get(DeliveryRow, delivery_id)
        assert row is not None
        return row

    async def answers(self) -> list[tuple[str, int | None, str | None, str]]:
        async with self.api.services.factory() as session:
            rows = await session.scalars(select(AnswerRow).order_by(AnswerRow.id))
            return [(a.step_id, a.score, a.text, a.channel) for a in rows]

    async def opted_out(self) -> bool:
        async with self.api.services.factory() as session:
            customer = await session.scalar(select(CustomerRow))
        return customer is not None and customer.opted_out_at is not None

    async def reachable(self, channel: str) -> bool:
        async with self.api.services.factory() as session:
            identity = await session.scalar(select(IdentityRow).where(
                IdentityRow.channel == channel))
        assert identity is not None
        return identity.reachable


@asynccontextmanager
async def world(db_url: str, sms: SmsProvider = "twilio") -> AsyncIterator[World]:
    """Every channel on; SMS through `sms`, one provider a process."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        async with BotApiStub() as stub, GraphApiStub() as graph, (
                TwilioStub() if sms == "twilio" else SmscStub()) as provider:
            sms_settings: dict[str, Any] = {
                "twilio_account_sid": twilio_api.ACCOUNT_SID,
                "twilio_auth_token": twilio_api.AUTH_TOKEN,
                "twilio_from": twilio_api.FROM_NUMBER, "twilio_api_base": provider.base_url,
            } if sms == "twilio" else {
                "smsc_login": smsc_api.LOGIN, "smsc_password": smsc_api.PASSWORD,
                "smsc_callback_secret": smsc_api.CALLBACK_SECRET,
                "smsc_api_base": provider.base_url}
            async with serving(
                    db_url, telegram=True, telegram_api_base=stub.base_url,
                    whatsapp_token=graph_api.TOKEN, whatsapp_api_base=graph.base_url,
                    whatsapp_phone_number_id=graph_api.PHONE_NUMBER_ID,
                    whatsapp_app_secret=APP_SECRET, whatsapp_verify_token="contract-verify",
                    telegram_chat_rate=1000.0, smtp_url=f"smtp://127.0.0.1:{controller.port}",
                    mail_from="Otklik <survey@example.com>",
                    webhook_url="https://example.org/tg/hook", webhook_secret=WEBHOOK_SECRET,
                    email_bounce_secret=BOUNCE_SECRET, failed_attempts=FAILED_ATTEMPTS,
                    send_attempts=3, public_url=PUBLIC_URL, **sms_settings) as api:
                yield World(api, stub, mailbox, str(api.client.make_url("/tg/hook")), graph,
                            provider)
    finally:
        controller.stop()


class Harness(Protocol):
    """A channel as its customers and its platform see it. Inbound methods are called on
    channels whose spec says `inbound`; refuse and sent on those that push; report on
    those with receipts."""

    w: World

    # -- inbound --------------------------------------------------------------------------
    async def begin(self, token: str) -> Shown:
        """Open the delivery's survey by the channel's start payload (a deep link)."""

    async def tap(self, label: str) -> Shown:
        """Pick the option labelled `label` on the question shown; what is shown next."""

    async def type(self, text: str) -> Shown:
        """Answer the question shown in words."""

    async def replay(self) -> int:
        """The last inbound request again, as the platform redelivers it; its status."""

    async def forged(self) -> int:
        """An inbound request presenting a wrong secret; its status."""

    async def allowed(self) -> int:
        """An inbound request presenting the right secret (or none needed); its status."""

    async def opt_out(self, token: str) -> None:
        """The customer says stop, as the channel lets them."""

    # -- outbound -------------------------------------------------------------------------
    def refuse(self, refusal: Refusal) -> None:
        """The platform refuses the next send: closed address, try later, or content."""

    def sent(self) -> list[Shown]:
        """What reached the customer through the platform, message by message."""

    # -- receipts -------------------------------------------------------------------------
    async def report(self, message_id: str, kind: Report) -> int:
        """The platform reports later on a sent message, in its documented form; the
        response's status."""


class TelegramHarness:
    _ids = itertools.count(900_000)

    def __init__(self, w: World) -> None:
        self.w = w
        self._last: str | None = None

    async def _post(self, body: str, secret: str = WEBHOOK_SECRET) -> int:
        self._last = body
        return await self.w.stub.post_webhook(self.w.webhook, json.loads(body), secret)

    def _shown(self) -> Shown:
        shown = self.sent()
        assert shown, self.w.stub.transcript()
        return shown[-1]

    async def begin(self, token: str) -> Shown:
        status = await self._post(payload("telegram/start.json", update_id=next(self._ids),
                                          message_id=next(self._ids), chat=CHAT,
                                          payload=token))
        assert status == 200
        return self._shown()

    async def tap(self, label: str) -> Shown:
        for message in reversed(self.w.stub.messages(CHAT)):
            for button in iter_buttons(message):
                if label in (button["text"], _label(button)):
                    status = await self._post(payload(
                        "telegram/callback_query.json", update_id=next(self._ids), chat=CHAT,
                        message=json.dumps(message), data=button["callback_data"]))
                    assert status == 200
                    return self._shown()
        raise AssertionError(f"no button {label!r}\n{self.w.stub.transcript()}")

    async def type(self, text: str) -> Shown:
        status = await self._post(payload("telegram/text.json", update_id=next(self._ids),
                                          message_id=next(self._ids), chat=CHAT, text=text))
        assert status == 200
        return self._shown()

    async def replay(self) -> int:
        assert self._last is not None
        return await self._post(self._last)

    async def forged(self) -> int:
        return await self._post(payload("telegram/text.json", update_id=next(self._ids),
                                        message_id=next(self._ids), chat=CHAT, text="9"),
                                secret="not-the-secret")

    async def allowed(self) -> int:
        return await self._post(payload("telegram/text.json", update_id=next(self._ids),
                                        message_id=next(self._ids), chat=CHAT, text="/help"))

    async def opt_out(self, token: str) -> None:
        await self.type("/stop")
        await self.tap("Yes, stop")

    def refuse(self, refusal: Refusal) -> None:
        status, description, retry = {
            "closed": (403, "Forbidden: bot was blocked by the user", None),
            "later": (429, None, 7),
            "content": (400, "Bad Request: message is too long", None)}[refusal]
        self.w.stub.fail("sendMessage", status=status, description=description,
                         retry_after=retry)

    def sent(self) -> list[Shown]:
        return [Shown(m["text"], tuple(_label(b) for b in iter_buttons(m)
                                       if b.get("callback_data", "")[:2] == "q:"
                                       and b["callback_data"].split(":")[3] in "at"))
                for m in self.w.stub.messages(CHAT) if m["from"]["is_bot"]]

    async def report(self, message_id: str, kind: Report) -> int:
        raise AssertionError("Telegram reports nothing after a send")


def _label(button: JSON) -> str:
    """An option's label as the script says it: without a face or a tick box."""
    text = str(button["text"]).removeprefix(PICKED).removeprefix(UNPICKED).strip()
    head, _, tail = text.rpartition(" ")
    return head if tail in FACES else text


OPTION = re.compile(r'value="(\d+)"[^>]*><span>([^<]*)</span>')
LEGEND = re.compile(r'<(?:legend|label) class="legend"[^>]*>([^<]*)<')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
HIDDEN = re.compile(r'name="(session|position)" value="(\d+)"')


class WebHarness:

    def __init__(self, w: World) -> None:
        self.w = w
        self._path = ""
        self._html = ""
        self._last: dict[str, str] | None = None

    async def _get(self, path: str) -> Shown:
        response = await self.w.api.client.get(path)
        assert response.status == 200, response.status
        self._path, self._html = path, await response.text()
        return self._shown()

    def _shown(self) -> Shown:
        legend = LEGEND.search(self._html)
        text = markup.unescape(legend[1]) if legend else re.sub(
            r"<[^>]+>", " ", self._html.split("<main", 1)[-1])
        return Shown(" ".join(text.split()),
                     tuple(markup.unescape(label) for _, label in OPTION.findall(self._html)))

    async def _submit(self, **fields: str) -> Shown:
        csrf = CSRF.search(self._html)
        assert csrf is not None, self._html
        form = {"csrf": csrf[1], **dict(HIDDEN.findall(self._html)), **fields}
        self._last = form
        response = await self.w.api.client.post(self._path, data=form)
        assert response.status == 200, await response.text()
        self._html = await response.text()
        return self._shown()

    async def begin(self, token: str) -> Shown:
        return await self._get(f"/s/{token}")

    async def tap(self, label: str) -> Shown:
        index = next(i for i, shown in OPTION.findall(self._html)
                     if markup.unescape(shown) == label)
        return await self._submit(answer=index)

    async def type(self, text: str) -> Shown:
        return await self._submit(text=text)

    async def replay(self) -> int:
        assert self._last is not None
        response = await self.w.api.client.post(self._path, data=self._last)
        return response.status

    async def forged(self) -> int:
        # A survey link's token is the page's secret: one nobody was given is a guess.
        response = await self.w.api.client.get("/s/" + "x" * 32)
        return response.status

    async def allowed(self) -> int:
        if not self._path:  # a delivery's link, taken while the budget lasts
            accepted = await self.w.trigger(None, key="allowed")
            self._path = f"/s/{(await self.w.delivery(accepted['delivery_id'])).token}"
        return (await self.w.api.client.get(self._path)).status

    async def opt_out(self, token: str) -> None:
        page = await self.w.api.client.get(f"/u/{token}")
        csrf = CSRF.search(await page.text())
        assert csrf is not None
        response = await self.w.api.client.post(f"/u/{token}", data={"csrf": csrf[1]})
        assert response.status == 200

    def refuse(self, refusal: Refusal) -> None:
        raise AssertionError("the web page sends nothing")

    def sent(self) -> list[Shown]:
        raise AssertionError("the web page sends nothing")

    async def report(self, message_id: str, kind: Report) -> int:
        raise AssertionError("the web page reports nothing")


SCORE_LINK = re.compile(r'<a class="score" href="([^"]+)"[^>]*>([^<]*)</a>')


class EmailHarness:

    def __init__(self, w: World) -> None:
        self.w = w

    async def begin(self, token: str) -> Shown:
        raise AssertionError("e-mail has no inbound message")

    async def tap(self, label: str) -> Shown:
        raise AssertionError("e-mail has no inbound message")

    async def type(self, text: str) -> Shown:
        raise AssertionError("e-mail has no inbound message")

    async def replay(self) -> int:
        return await self._bounce(self._last)

    async def forged(self) -> int:
        response = await self.w.api.client.post(
            "/email/bounces", data=b"x", headers={"X-Otklik-Bounce-Secret": "wrong"})
        return response.status

    async def allowed(self) -> int:
        # A right secret with a body that is no bounce: refused for the body, not the secret.
        response = await self.w.api.client.post(
            "/email/bounces", data=b"x", headers={"X-Otklik-Bounce-Secret": BOUNCE_SECRET})
        return response.status

    async def opt_out(self, token: str) -> None:
        [message, *_] = self.w.mailbox.messages
        link = message["List-Unsubscribe"].strip().strip("<>")
        self.w.api.client.session.cookie_jar.clear()  # a mail client sends no cookie
        response = await self.w.api.client.post(
            link.removeprefix(self.w.api.services.links.base_url),
            data={"List-Unsubscribe": "One-Click"})
        assert response.status == 200, (link, response.status, await response.text())

    def refuse(self, refusal: Refusal) -> None:
        if refusal == "closed":
            self.w.mailbox.rcpt = "550 5.1.1 No such user"
        elif refusal == "later":
            self.w.mailbox.rcpt = "451 4.7.1 Try again later"
        else:
            self.w.mailbox.data = "554 5.6.0 Message content rejected"

    def sent(self) -> list[Shown]:
        shown = []
        for message in self.w.mailbox.messages:
            html = message.get_body(preferencelist=("html",))
            assert html is not None
            body = html.get_content()
            question = re.search(r'<p class="question">([^<]*)</p>', body)
            shown.append(Shown(markup.unescape(question[1]) if question else body,
                               tuple(markup.unescape(label)
                                     for _, label in SCORE_LINK.findall(body))))
        return shown

    async def report(self, message_id: str, kind: Report) -> int:
        example = {"delivered": "delivered_postfix"}.get(kind, kind)
        original = (f"Message-ID: {message_id}\nFrom: Otklik <survey@example.com>\n"
                    f"To: {EMAIL}\nSubject: Net Promoter Score: one quick question\n")
        raw = payload(f"email/{example}.eml", recipient=EMAIL, original=original,
                      headers=original).replace("\n", "\r\n").encode()
        self._last = raw
        return await self._bounce(raw)

    async def _bounce(self, raw: bytes) -> int:
        response = await self.w.api.client.post(
            "/email/bounces", data=raw, headers={"X-Otklik-Bounce-Secret": BOUNCE_SECRET,
                                                 "Content-Type": "message/rfc822"})
        return response.status


class WhatsAppHarness:
    _ids = itertools.count(1)

    def __init__(self, w: World) -> None:
        self.w = w
        self._last = ""

    def _fill(self, path: str, **values: str | int) -> str:
        return payload(path, waba_id=graph_api.WABA_ID, wa_id=WA_ID, name="Anna",
                       display_phone_number=graph_api.DISPLAY_PHONE_NUMBER,
                       phone_number_id=graph_api.PHONE_NUMBER_ID, timestamp="1772452800",
                       wamid=f"wamid.contract{next(self._ids)}", **values)

    async def _post(self, body: str, signature: str | None = None) -> int:
        self._last = body
        return await self.w.graph.post_webhook(
            str(self.w.api.client.make_url("/whatsapp/webhook")), json.loads(body),
            APP_SECRET, signature=signature)

    def _shown(self) -> Shown:
        shown = self.sent()
        assert shown, self.w.graph.calls
        return shown[-1]

    async def begin(self, token: str) -> Shown:
        # The template's quick-reply button carries the start payload (a wa.me link's
        # prefilled text is the same words).
        assert await self._post(self._fill("whatsapp/quick_reply_button.json",
                                           payload=f"start:{token}", text="Rate now",
                                           context_wamid="wamid.template")) == 200
        return self._shown()

    async def tap(self, label: str) -> Shown:
        for body in reversed(self.w.graph.sent(WA_ID)):
            for option in _options(body):
                title = option["title"]
                if title == label or (_grouped(title, label) and option["id"].split(":")[2]
                                      == "g"):
                    kind = "button_reply" if body["interactive"]["type"] == "button" \
                        else "list_reply"
                    extra = {"description": ""} if kind == "list_reply" else {}
                    assert await self._post(self._fill(
                        f"whatsapp/{kind}.json", reply_id=option["id"], title=title,
                        context_wamid=body["wamid"], **extra)) == 200
                    return self._shown() if title == label else await self.tap(label)
        raise AssertionError(f"no option {label!r} in {self.w.graph.sent(WA_ID)}")

    async def type(self, text: str) -> Shown:
        assert await self._post(self._fill("whatsapp/text.json", text=text)) == 200
        return self._shown()

    async def replay(self) -> int:
        return await self._post(self._last)

    async def forged(self) -> int:
        return await self._post(self._fill("whatsapp/text.json", text="9"),
                                signature="sha256=" + "0" * 64)

    async def allowed(self) -> int:
        # A signed status of a message nobody sent: taken, and changes nothing.
        return await self._post(self._fill("whatsapp/status_delivered.json",
                                           conversation_id="c1"))

    async def opt_out(self, token: str) -> None:
        await self.type("STOP")

    def refuse(self, refusal: Refusal) -> None:
        self.w.graph.fail({"closed": 131026, "later": 130429, "content": 131009}[refusal],
                          to=WA_ID)

    def sent(self) -> list[Shown]:
        return [Shown(_text(body), tuple(o["title"] for o in _options(body)))
                for body in self.w.graph.sent(WA_ID)]

    async def report(self, message_id: str, kind: Report) -> int:
        if kind == "delivered":
            body = self._fill("whatsapp/status_delivered.json", conversation_id="c1")
        elif kind == "delayed":  # WhatsApp says "sent" while it still tries
            body = self._fill("whatsapp/status_delivered.json", conversation_id="c1"
                              ).replace('"delivered"', '"sent"')
        else:
            body = self._fill("whatsapp/status_failed_131047.json")
            if kind == "failed_temporary":  # "something went wrong": not the address
                body = body.replace("131047", "131000")
        body = body.replace(json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"][0]
                            ["id"], message_id)
        return await self._post(body)


def _options(body: JSON) -> list[JSON]:
    interactive = body.get("interactive")
    if not interactive:
        return []
    action = interactive["action"]
    if interactive["type"] == "button":
        return [button["reply"] for button in action["buttons"]]
    return [row for section in action["sections"] for row in section["rows"]]


def _text(body: JSON) -> str:
    if body["type"] == "text":
        return str(body["text"]["body"])
    if body["type"] == "interactive":
        return str(body["interactive"]["body"]["text"])
    return str(body["template"]["name"])


def _grouped(title: str, label: str) -> bool:
    """Whether a group's row ("0–1") holds the option labelled `label`."""
    first, dash, last = title.partition("–")
    return bool(dash) and first.isdigit() and last.isdigit() and label.isdigit() and \
        int(first) <= int(label) <= int(last)


class SmsHarness:
    """The customer texts from PHONE; the provider is the World's (Twilio or SMSC). SMS
    has no taps: picking an option is typing it, and a question shows no options."""

    _ids = itertools.count(1)

    def __init__(self, w: World) -> None:
        self.w = w
        self._last: dict[str, str] = {}

    async def _post(self, fields: dict[str, str], *, wrong: bool = False) -> int:
        self._last = fields
        sms, client = self.w.sms, self.w.api.client
        if isinstance(sms, TwilioStub):
            path = "/sms/twilio/status" if "MessageStatus" in fields else "/sms/twilio"
            status, _ = await sms.post_webhook(
                str(client.make_url(path)), fields, signed_url=PUBLIC_URL + path,
                signature="0" * 28 if wrong else None)
            return status
        secret = "x" * 27 if wrong else smsc_api.CALLBACK_SECRET
        status, _ = await sms.post_webhook(
            str(client.make_url(f"/sms/smsc/{secret}?charset=utf-8")), fields)
        return status

    def _text(self, text: str) -> dict[str, str]:
        if isinstance(self.w.sms, TwilioStub):
            return self.w.sms.inbound(PHONE, text)
        # SMSC's id of the message, which the handler dedupes by (its page does not show
        # whether it sends one: without it, a message posted twice is read twice).
        return {**self.w.sms.inbound(PHONE, text), "id": str(next(self._ids))}

    def _shown(self) -> Shown:
        shown = self.sent()
        assert shown, self.w.sms.calls
        return shown[-1]

    async def begin(self, token: str) -> Shown:
        # An sms: link's prefilled body, as a wa.me link's is in WhatsApp.
        assert await self._post(self._text(token)) == 200
        return self._shown()

    async def tap(self, label: str) -> Shown:
        return await self.type(label)

    async def type(self, text: str) -> Shown:
        assert await self._post(self._text(text)) == 200
        return self._shown()

    async def replay(self) -> int:
        return await self._post(self._last)

    async def forged(self) -> int:
        return await self._post(self._text("9"), wrong=True)

    async def allowed(self) -> int:
        # A right secret with a report of a message nobody sent: taken, changes nothing.
        return await self.report("SM" + "0" * 32 if isinstance(self.w.sms, TwilioStub)
                                 else "1", "delivered")

    async def opt_out(self, token: str) -> None:
        await self._post(self._text("СТОП"))

    def refuse(self, refusal: Refusal) -> None:
        if isinstance(self.w.sms, TwilioStub):
            code, status = {"closed": (21614, 400), "later": (20429, 429),
                            "content": (21617, 400)}[refusal]
            self.w.sms.fail(code, to=PHONE, status=status)
        else:
            self.w.sms.fail({"closed": 8, "later": 9, "content": 6}[refusal], phone=PHONE)

    def sent(self) -> list[Shown]:
        field = "Body" if isinstance(self.w.sms, TwilioStub) else "mes"
        return [Shown(message[field], ()) for message in self.w.sms.sent(PHONE)]

    async def report(self, message_id: str, kind: Report) -> int:
        sms = self.w.sms
        if isinstance(sms, TwilioStub):
            status, code = {"delivered": ("delivered", None), "delayed": ("sent", None),
                            "failed_temporary": ("undelivered", 30003),
                            "failed_permanent": ("undelivered", 30005)}[kind]
            return await self._post(sms.status(message_id, PHONE, status, error_code=code))
        state, err = {"delivered": (1, None), "delayed": (0, None),
                      "failed_temporary": (20, 6), "failed_permanent": (20, 1)}[kind]
        return await self._post(sms.status(message_id, PHONE, state, err=err))


HARNESSES: dict[str, Callable[[World], Harness]] = {
    "telegram": TelegramHarness, "whatsapp": WhatsAppHarness, "sms": SmsHarness,
    "web": WebHarness, "email": EmailHarness}


def specs(where: Callable[[Spec], bool] = lambda spec: True) -> list[str]:
    """The registered channels whose spec passes `where`, for a test's parameters: every
    registered channel must have a harness (test_contract checks it)."""
    return [plugin.spec.name for plugin in CHANNELS if where(plugin.spec)]


def params(where: Callable[[Spec], bool] = lambda spec: True) -> list[Any]:
    """specs() as a test's parameters: SMS once for each provider (the `w` fixture reads
    the provider from the test's id)."""
    return [pytest.param(name, id=f"sms-{provider}") if name == "sms" else name
            for name in specs(where)
            for provider in (("twilio", "smsc") if name == "sms" else ("",))]
