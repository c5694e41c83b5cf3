"""WhatsApp's webhook at /whatsapp/webhook: Meta's verification handshake (GET) and its
notifications (POST), each accepted only with a valid X-Hub-Signature-256 over the raw
body (a wrong one is a failed attempt, and nothing is stored).

Messages: a text answers the open question (a typed "9" works), or, with none open,
starts DEFAULT_SURVEY, as /start does in Telegram; "start:<token>" (the template's
quick-reply button, or a wa.me link's prefilled text) opens that delivery's survey; a
button or list reply answers the question it was shown for; the channel's opt-out words
stop every survey. Each message is claimed once by its id (Meta delivers a notification
again until it is answered 200). Statuses are receipts: `failed` with a closing code
moves a delivery still waiting for its answer on to the next channel.

pywa parses for its own handlers, which log and swallow their errors: a notification
that finds the database away would be answered 200 and never sent again. So the
documented JSON is read here, and any failure answers 5xx: Meta sends it again."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from pywa_async.client import WhatsApp

from bot.keys import RECEIPTS, SETTINGS, SURVEYS
from bot.phones import e164
from bot.services.channels import Receipt, ReceiptStatus
from bot.services.surveys import Event, LinkExpired, NoSurvey, OptedOut, Outcome, Tap, Who
from bot.services.triggers import TOKEN
from bot.signing import same_secret
from bot.texts import gettext, ui_locale
from conversations.engine import Reply
from handlers.api.core import ApiError, body
from handlers.api.throttle import PRESENTED
from handlers.channels import REFUSALS
from handlers.whatsapp import render
from handlers.whatsapp.channel import (
    CLIENT,
    CLOSED,
    PATH,
    SIGNATURE_HEADER,
    SPEC,
    send,
    signed,
)

routes = web.RouteTableDef()
log = logging.getLogger(__name__)
START = "start:"
JSON = dict[str, Any]


@routes.get(PATH)
async def verify(request: web.Request) -> web.Response:
    """Meta's subscription check: the verify token we gave it, and its challenge back."""
    token = request.app[SETTINGS].whatsapp_verify_token
    query = request.query
    if token is None or query.get("hub.mode") != "subscribe" or not same_secret(
            query.get("hub.verify_token", ""), token.get_secret_value()):
        raise web.HTTPForbidden(text="Wrong hub.mode or hub.verify_token.")
    return web.Response(text=query.get("hub.challenge", ""))


@routes.post(PATH)
async def receive(request: web.Request) -> web.Response:
    if CLIENT not in request.app:
        raise ApiError(401, "unauthorized", "WhatsApp is not configured in this process "
                       "(WHATSAPP_TOKEN, WHATSAPP_PHONE_NUMBER_ID, WHATSAPP_APP_SECRET, "
                       "WHATSAPP_VERIFY_TOKEN)", SIGNATURE_HEADER)
    raw = await body(request)
    # Judged already by throttle.failed_attempts, where it ran: not computed twice.
    if SIGNATURE_HEADER not in request.get(PRESENTED, ()) and not signed(
            request.app[SETTINGS], raw, request.headers.get(SIGNATURE_HEADER, "")):
        raise ApiError(401, "unauthorized", "X-Hub-Signature-256 is not the HMAC-SHA256 of "
                       "the body with WHATSAPP_APP_SECRET", SIGNATURE_HEADER)
    try:
        notification = json.loads(raw)
        values = [change["value"] for entry in notification["entry"]
                  for change in entry["changes"] if change.get("field") == "messages"]
    except (ValueError, KeyError, TypeError) as error:
        raise ApiError(400, "invalid", f"not a WhatsApp notification ({type(error).__name__})",
                       "body") from None
    for value in values:
        account = str(value.get("metadata", {}).get("phone_number_id", ""))
        names = {c.get("wa_id") or c.get("user_id"): c.get("profile", {}).get("name")
                 for c in value.get("contacts", [])}
        for message in value.get("messages", []):
            # The sender's wa_id (their number's digits), or, for someone who hides it
            # behind a username, the business-scoped user id Meta sends instead.
            sender = message.get("from") or message.get("from_user_id")
            if sender:
                await _message(request, account, message, str(sender), names.get(sender))
        for status in value.get("statuses", []):
            await _status(request, account, status)
    return web.json_response({"ok": True})


async def _message(request: web.Request, account: str, message: JSON, sender: str,
                   name: str | None) -> None:
    surveys, client = request.app[SURVEYS], request.app[CLIENT]
    who = Who("whatsapp", sender, first_name=name,
              # Their number, when the id is one (not a username's): joins them to whoever
              # has that number.
              phone=e164("+" + sender) if sender.isdigit() else None)
    event: Event = ("whatsapp", f"{account}:{message['id']}")
    kind = message.get("type")
    picked: render.Picked | None = None
    if kind == "interactive":
        reply = message["interactive"].get(message["interactive"].get("type"), {})
        picked = render.read(str(reply.get("id", "")))
    typed = (message.get("text", {}).get("body") if kind == "text"
             else message.get("button", {}).get("payload") if kind == "button" else None)
    if typed is not None and SPEC.opts_out(typed):
        await surveys.opt_out(who)
        await _say(client, who, "Done: you will not receive any more surveys from us.")
        return
    if typed is not None and (token := _token(typed)) is not None:
        await _begin(request, who, event, token)
        return
    if picked is not None and picked.action == "g":
        asking = await surveys.asking(who)
        question = next((p for p in asking.prompts if p.position == picked.position),
                        None) if asking else None
        if question is not None:
            await send(client, who.address, render.opened(question, picked))
        return
    if picked is not None:
        outcome = await surveys.tap(who, Tap(
            picked.session_id, picked.position, picked=(picked.first,),
            skip=picked.action == "s"), event=event)
    else:
        outcome = await surveys.reply(
            who, Reply.typed(typed) if typed is not None else Reply.unsupported(),
            event=event)
        if outcome is None:  # nothing open: writing to us starts the default survey
            await _begin(request, who, (event[0], f"{event[1]}:start"), None)
            return
    if outcome is not None:
        await _show(client, who, outcome)


def _token(text: str) -> str | None:
    """A delivery's token the customer sent: the template button's "start:<token>", or a
    wa.me/<number>?text=<token> link's prefilled text."""
    token = text.strip().removeprefix(START)
    return token if TOKEN.fullmatch(token) else None


async def _begin(request: web.Request, who: Who, event: Event, token: str | None) -> None:
    client = request.app[CLIENT]
    try:
        outcome = await request.app[SURVEYS].begin(
            who, request.app[SETTINGS].default_survey, token=token or None, event=event)
    except (OptedOut, LinkExpired, NoSurvey) as refused:
        await _say(client, who, REFUSALS[type(refused)])
        return
    if not outcome.duplicate:
        await _show(client, who, outcome)


async def _show(client: WhatsApp, who: Who, outcome: Outcome) -> None:
    locale = ui_locale(outcome.locale)
    skip = gettext("Skip", locale)
    if outcome.reprompt is not None and not outcome.finished:
        prompt = outcome.reprompt.prompt
        await send(client, who.address,
                   render.shown(prompt, outcome.session_id, skip_label=skip,
                                hint=outcome.reprompt.hint) if prompt
                   else render.Shown(outcome.reprompt.hint))
    for prompt in outcome.prompts:
        await send(client, who.address,
                   render.shown(prompt, outcome.session_id, skip_label=skip))


async def _say(client: WhatsApp, who: Who, text: str) -> None:
    await send(client, who.address, render.Shown(gettext(text, ui_locale(who.locale))))


async def _status(request: web.Request, account: str, status: JSON) -> None:
    kind = {"delivered": ReceiptStatus.DELIVERED, "read": ReceiptStatus.READ,
            "failed": ReceiptStatus.FAILED}.get(str(status.get("status")))
    if kind is None:  # "sent": accepted by WhatsApp, nothing to change
        return
    codes = [int(error.get("code", 0)) for error in status.get("errors", [])]
    closed = next((CLOSED[code] for code in codes if code in CLOSED), None)
    await request.app[RECEIPTS].apply(Receipt(
        "whatsapp", str(status["id"]), kind,
        event_id=f"{account}:{status['id']}:{status.get('status')}", closed=closed,
        error=f"code {codes[0]}" if codes else None))
