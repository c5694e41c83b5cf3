"""WhatsApp as a channel (bot.services.channels), through Meta's Cloud API with pywa.

A customer is addressed by the id Meta gives them (their number's digits, wa_id; a
trigger's phone number gives it). Business-initiated messages may be free-form only within
24 hours of the customer's last message: outside it the dispatcher marks the Job as a
template, and the channel sends WHATSAPP_TEMPLATE (a utility template: the survey's title
as its body's {{1}} and a quick-reply button whose tap starts the survey, which opens the
window). Inside it, the question itself, drawn by render.py.

Errors as the contract classes them (Meta's error codes): 131047 (outside the window),
131026 (undeliverable), 131049 (a marketing limit) close the address; 130429
(throughput), 131056 (the pair rate: about one message per 6 s to one user), 131000 and
HTTP or network failures are tried later; parameters refused (100, 131008, 131009, a
template's 132000-132015) are undeliverable. Most failures come later, by webhook, as
statuses (webhook.py)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import httpx
from aiohttp import web
from pywa.types.callback import Button, Section, SectionList, SectionRow
from pywa_async.client import WhatsApp
from pywa_async.errors import WhatsAppError
from pywa_async.types.templates import TemplateLanguage

from bot.keys import SETTINGS
from bot.services.channels import (
    AddressKind,
    Caps,
    ChannelClosed,
    Job,
    Spec,
    TryLater,
    Undeliverable,
    Window,
)
from bot.settings import Settings
from bot.signing import same_secret
from bot.texts import gettext, ui_locale
from handlers.api.throttle import Presented
from handlers.channels import Plugin
from handlers.whatsapp import render

SIGNATURE_HEADER = "X-Hub-Signature-256"
PATH = "/whatsapp/webhook"
SPEC = Spec("whatsapp", AddressKind.USER_ID, pushes=True, inbound=True, receipts=True,
            opt_out=frozenset({"stop", "стоп", "unsubscribe", "отписаться"}),
            caps=Caps(buttons=render.ROWS, label=render.ROW_TITLE),
            window=Window(timedelta(hours=24), template=True))
CLOSED = {131047: "window_closed", 131026: "undeliverable", 131049: "marketing_limit"}
LATER = {130429: 1.0, 131056: 6.0, 131000: None, 2: None}  # with the wait Meta implies
REFUSED = {100, 131008, 131009, *range(132000, 132016)}


def signed(settings: Settings, body: bytes, header: str) -> bool:
    """Whether X-Hub-Signature-256 is the HMAC-SHA256 of the raw body with the app secret."""
    secret = settings.whatsapp_app_secret
    if secret is None:
        return False
    expected = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    return same_secret(header, f"sha256={expected}")


def _presented(given: Presented) -> bool:
    return signed(given.request.app[SETTINGS], given.body,
                  given.request.headers[SIGNATURE_HEADER])


def configured(settings: Settings) -> bool:
    return None not in (settings.whatsapp_token, settings.whatsapp_phone_number_id,
                        settings.whatsapp_app_secret, settings.whatsapp_verify_token)


CLIENT = web.AppKey("whatsapp", WhatsApp)


def attach(app: web.Application) -> WhatsAppChannel:
    settings = app[SETTINGS]
    client, session = build_client(settings)
    app[CLIENT] = client

    async def close(_: web.Application) -> None:
        await session.aclose()  # pywa leaves its session to whoever made it

    app.on_cleanup.append(close)
    return WhatsAppChannel(client, settings.whatsapp_template)


PLUGIN = Plugin(SPEC, configured, {SIGNATURE_HEADER: _presented}, webhooks=[PATH],
                attach=attach)


def build_client(settings: Settings) -> tuple[WhatsApp, httpx.AsyncClient]:
    """pywa's client, talking to WHATSAPP_API_BASE (Meta's Graph API, or a stand-in), and
    its HTTP session, for its owner to close."""
    assert settings.whatsapp_token is not None
    session = httpx.AsyncClient(timeout=30)
    client = WhatsApp(phone_id=settings.whatsapp_phone_number_id,
                      token=settings.whatsapp_token.get_secret_value(), session=session)
    # pywa points its session at graph.facebook.com/v<version>: the same path elsewhere.
    session.base_url = str(session.base_url).replace("https://graph.facebook.com",
                                                     settings.whatsapp_api_base.rstrip("/"))
    return client, session


async def send(client: WhatsApp, to: str, shown: render.Shown) -> str:
    """One message; its wamid. Errors are pywa's (WhatsAppError) or httpx's."""
    if shown.kind == "buttons":
        sent = await client.send_message(to, shown.text, buttons=[
            Button(o.title, callback_data=o.id) for o in shown.options])
    elif shown.kind == "list":
        sent = await client.send_message(to, shown.text, buttons=SectionList(
            button_title="Choose", sections=[Section(title="Options", rows=[
                SectionRow(o.title, callback_data=o.id) for o in shown.options])]))
    else:
        sent = await client.send_message(to, shown.text)
    return str(sent.id)


class WhatsAppChannel:
    spec = SPEC

    def __init__(self, client: WhatsApp, template: str) -> None:
        self._client = client
        self._template = template

    async def send(self, job: Job) -> str | None:
        locale = ui_locale(job.locale)
        last = None
        try:
            if job.template:
                return await self._send_template(job, locale)
            if job.reminder:
                await send(self._client, job.address, render.Shown(gettext(
                    "A reminder: we would still love to hear from you.", locale)))
            for prompt in job.prompts:
                last = await send(self._client, job.address, render.shown(
                    prompt, job.dialogue_id, skip_label=gettext("Skip", locale)))
        except WhatsAppError as error:
            raise classified(error) from None
        except httpx.HTTPError as error:
            raise TryLater(f"WhatsApp: {type(error).__name__}") from None
        return last

    async def _send_template(self, job: Job, locale: str) -> str:
        sent = await self._client.send_template(
            job.address, self._template, TemplateLanguage(_language(locale)), params=[
                {"type": "body", "parameters": [{"type": "text", "text": job.title}]},
                {"type": "button", "sub_type": "quick_reply", "index": "0",
                 "parameters": [{"type": "payload", "payload": f"start:{job.token}"}]}])
        return str(sent.id)


def classified(error: WhatsAppError) -> Exception:
    """Meta's error as the contract's class."""
    code = error.code
    if code in CLOSED:
        return ChannelClosed(CLOSED[code])
    if code in LATER:
        return TryLater(f"WhatsApp: {code}", LATER[code])
    if code in REFUSED:
        return Undeliverable(f"WhatsApp: {code}")
    return TryLater(f"WhatsApp: {code}")


def _language(locale: str) -> str:
    return {"en": "en_US", "ru": "ru"}.get(locale, "en_US")
