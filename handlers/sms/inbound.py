"""A customer's SMS, whichever provider brought it: an opt-out word stops every survey; a
reply answers the open question (typed answers as everywhere: "9", "9/10", "девять"),
and the next question goes back by SMS; with no survey open, writing to us starts
DEFAULT_SURVEY, as in the messengers. Each message is claimed once by the provider's id
for it, so a webhook delivered twice answers once."""

from __future__ import annotations

import logging
import re
from typing import Literal, Protocol

from aiohttp import web

from bot.keys import SETTINGS, SURVEYS
from bot.services.channels import ChannelClosed, TryLater, Undeliverable
from bot.services.surveys import Event, LinkExpired, NoSurvey, OptedOut, Outcome, Who
from bot.services.triggers import TOKEN
from bot.texts import gettext, ui_locale
from conversations.engine import Reply
from handlers.channels import REFUSALS
from handlers.sms import render
from handlers.sms.spec import SPEC

log = logging.getLogger(__name__)
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


class Provider(Protocol):
    """What sends an SMS: Twilio, the SMSC gateway."""

    async def send(self, to: str, text: str) -> str:
        """The provider's id of the message; raises the contract's ChannelClosed, TryLater
        or Undeliverable."""

    async def close(self) -> None: ...


PROVIDER = web.AppKey("sms_provider", Provider)


async def received(app: web.Application, sender: str, text: str, event_id: str | None, *,
                   provider: Literal["STOP", "START"] | None = None) -> None:
    """`sender` in E.164; `event_id`, the provider's id of the message (None: it gives
    none, and a message posted twice is read twice); `provider`: the provider took the
    message as its own opt-out (STOP) or opt-in (START) keyword, and answers it itself (we
    must not: after a STOP it would refuse the send)."""
    surveys = app[SURVEYS]
    who = Who("sms", sender, phone=sender)
    event: Event | None = ("sms", event_id) if event_id else None
    if provider == "START":  # they asked the provider for messages again: ours too
        await surveys.opt_in(who)
        return
    provider_stops = provider == "STOP"
    if provider_stops or SPEC.opts_out(text):
        if await surveys.opt_out(who) and not provider_stops:
            await _say(app, who, "Done: you will not receive any more surveys from us.",
                       _locale(text))
        return
    # A delivery's token (an sms: link's prefilled body, from its page) opens its survey
    # here; anything else answers the open question.
    token = text.strip() if TOKEN.fullmatch(text.strip()) else None
    outcome = None if token else await surveys.reply(who, Reply.typed(text), event=event)
    if outcome is None:  # nothing open: writing to us starts the default survey
        try:
            outcome = await surveys.begin(
                who, app[SETTINGS].default_survey, token=token,
                event=(event[0], f"{event[1]}:start") if event else None)
        except OptedOut:
            return  # they asked for silence: an SMS saying so would break it
        except (LinkExpired, NoSurvey) as refused:
            await _say(app, who, REFUSALS[type(refused)], _locale(text))
            return
        if outcome.duplicate:
            return
    await _show(app, who, outcome)


async def _show(app: web.Application, who: Who, outcome: Outcome) -> None:
    locale = ui_locale(outcome.locale)
    parts = []
    if outcome.reprompt is not None and not outcome.finished:
        prompt = outcome.reprompt.prompt
        parts.append(render.text(prompt, locale, hint=outcome.reprompt.hint) if prompt
                     else outcome.reprompt.hint)
    parts += [render.text(prompt, locale) for prompt in outcome.prompts]
    if parts:
        await _send(app, who, "\n\n".join(parts))


async def _say(app: web.Application, who: Who, text: str, locale: str) -> None:
    await _send(app, who, gettext(text, locale))


async def _send(app: web.Application, who: Who, text: str) -> None:
    """A reply to what the customer sent. Their answer is stored by now: a reply that
    cannot go out is logged, not answered with an error (the provider would post the
    message again, and it would count once, unanswered all the same)."""
    try:
        await app[PROVIDER].send(who.address, text)
    except (ChannelClosed, TryLater, Undeliverable) as error:
        log.warning("SMS reply not sent: %s", error, extra={"channel": "sms"})


def _locale(text: str) -> str:
    """Our words in theirs, when we know nothing else: a customer who wrote СТОП reads
    Russian."""
    return "ru" if CYRILLIC.search(text) else "en"
