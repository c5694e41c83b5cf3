"""SMS as a channel (bot.services.channels), through one provider: Twilio (twilio.py) or
the SMSC.ru gateway (smsc.py).

A customer is addressed by their number in E.164 (a trigger's `phone` gives it). A script
says how it asks by SMS: `sms: dialogue` (the default) sends the questions, answered by
replying (inbound.py); `sms: link` sends one message with the survey's short link,
answered on its page. A survey's prompts go as one message (a multipart SMS past one
segment: render.py); the first says how to stop. Quiet hours and throttles apply as
everywhere; the providers' errors are classed in their modules, and their delivery
reports are receipts."""

from __future__ import annotations

from aiohttp import web

from bot.keys import LINKS, SETTINGS
from bot.links import Links
from bot.services.channels import Job
from bot.settings import Settings
from bot.texts import gettext, ui_locale
from handlers.channels import Plugin
from handlers.sms import render, smsc, twilio
from handlers.sms.inbound import PROVIDER, Provider
from handlers.sms.spec import SPEC


class SmsChannel:
    spec = SPEC

    def __init__(self, provider: Provider, links: Links) -> None:
        self._provider = provider
        self._links = links

    async def send(self, job: Job) -> str | None:
        return await self._provider.send(job.address, message(job, self._links))


def message(job: Job, links: Links) -> str:
    """The job as one SMS: the link (`sms: link`), or the prompts (a reminder says so)."""
    locale = ui_locale(job.locale)
    if job.link:
        return render.invitation(job.title, links.page(job.token), locale)
    parts = [gettext("A reminder: we would still love to hear from you.", locale)
             ] if job.reminder else []
    parts += [render.text(prompt, locale) for prompt in job.prompts]
    if not job.reminder:
        parts.append(render.how_to_stop(locale))
    return "\n\n".join(parts)


def configured(settings: Settings) -> bool:
    return settings.sms_provider is not None


def attach(app: web.Application) -> SmsChannel:
    settings = app[SETTINGS]
    provider: Provider = (twilio.TwilioSms(settings) if settings.sms_provider == "twilio"
                          else smsc.SmscSms(settings))
    app[PROVIDER] = provider

    async def close(_: web.Application) -> None:
        await provider.close()

    app.on_cleanup.append(close)
    return SmsChannel(provider, app[LINKS])


PLUGIN = Plugin(SPEC, configured, {twilio.SIGNATURE_HEADER: twilio.presented},
                webhooks=[twilio.INBOUND, twilio.STATUS], attach=attach,
                advise=render.advice, secret_paths=[smsc.PREFIX])
