"""Surveys by e-mail: the dispatcher's Sender for the e-mail channel. An invitation in HTML
and plain text (templates per locale) whose score buttons are links to the page with that
score chosen and the follow-up under it (stored when the customer sends it, never on the
link's fetch: handlers/web/pages.py); an unsubscribe link and the List-Unsubscribe
headers; sent with aiosmtplib to SMTP_URL.

A recipient the server refuses for good (5xx at RCPT) closes the channel for that address,
so the delivery falls back to the next one; a message refused for good (5xx at DATA) is
undeliverable; anything else is tried again later. A bounce that comes later is a
receipt (bounces.py)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib
import jinja2

from bot.links import Links
from bot.services.channels import (
    AddressKind,
    ChannelClosed,
    Job,
    Spec,
    TryLater,
    Undeliverable,
)
from bot.texts import gettext, ui_locale
from conversations.engine import PromptKind
from handlers.channels import Plugin
from handlers.email import bounces

TEMPLATES = Path(__file__).resolve().parent / "templates"
# No inbound message: the invitation's links open the web page, where the answers go in
# (its opt-out is the unsubscribe link and List-Unsubscribe). Receipts are bounces.
SPEC = Spec("email", AddressKind.EMAIL, pushes=True, inbound=False, receipts=True)
PLUGIN = Plugin(SPEC, lambda settings: settings.smtp_url is not None,
                {bounces.SECRET_HEADER: bounces.presents_secret}, webhooks=[bounces.PATH])


@dataclass(frozen=True, slots=True)
class Smtp:
    """Where to send, from SMTP_URL: smtp://[user:password@]host[:port] (STARTTLS when the
    server offers it) or smtps://... (TLS from the start)."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool

    @classmethod
    def from_url(cls, url: str) -> Smtp:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:password@host:587 "
                             "or smtps://user:password@host:465")
        tls = parts.scheme == "smtps"
        return cls(parts.hostname, parts.port or (465 if tls else 25),
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, tls)

    async def send(self, message: EmailMessage, *, seconds: float) -> None:
        """One message, within `seconds`; aiosmtplib's errors are the caller's to judge."""
        await aiosmtplib.send(message, hostname=self.hostname, port=self.port,
                              username=self.username, password=self.password,
                              use_tls=self.use_tls, timeout=seconds)


class EmailChannel:
    spec = SPEC

    def __init__(self, smtp: Smtp, sender: str, links: Links, *, timeout: float = 30) -> None:
        self._smtp = smtp
        self._sender = sender
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        self._links = links
        self._timeout = timeout
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(["html"]), keep_trailing_newline=True)

    def compose(self, job: Job) -> EmailMessage:
        locale = ui_locale(job.locale)
        asked = [p for p in job.prompts if p.kind is not PromptKind.MESSAGE]
        first = asked[0] if asked else None
        scores = ([{"label": o.label, "url": self._links.score(job.token, o.value)}
                   for o in first.options]
                  if first is not None and first.kind is PromptKind.SCALE else [])
        unsubscribe = self._links.unsubscribe(job.token)
        context = {
            "title": job.title, "reminder": job.reminder, "scores": scores,
            "question": first.text if first else " ".join(p.text for p in job.prompts),
            "low_label": first.low_label if first else None,
            "high_label": first.high_label if first else None,
            "page": self._links.page(job.token), "telegram": self._links.telegram(job.token),
            "unsubscribe": unsubscribe}
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = formataddr(("", job.address))
        subject = gettext("{title}: one quick question", locale).format(title=job.title)
        message["Subject"] = (gettext("Reminder", locale) + ": " + subject if job.reminder
                              else subject)
        # The same delivery gives the same id: a resend after a crash is one thread.
        message["Message-ID"] = (f"<otklik.{job.delivery_id}"
                                 f"{'.reminder' if job.reminder else ''}@{self._domain}>")
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self._templates.get_template(f"email/invite.{locale}.txt")
                            .render(context))
        message.add_alternative(self._templates.get_template(f"email/invite.{locale}.html")
                                .render(context), subtype="html")
        return message

    async def send(self, job: Job) -> str | None:
        message = self.compose(job)
        try:
            await self._smtp.send(message, seconds=self._timeout)
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            if codes and all(500 <= code < 600 for code in codes):
                raise ChannelClosed("hard_bounce") from None
            raise TryLater(f"SMTP: recipient refused ({codes})") from None
        except aiosmtplib.SMTPDataError as error:
            if 500 <= error.code < 600:  # the message refused for good, not the address
                raise Undeliverable(f"SMTP: {error.code} at DATA") from None
            raise TryLater(f"SMTP: {error.code}") from None
        except aiosmtplib.SMTPResponseException as error:
            raise TryLater(f"SMTP: {error.code}") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise TryLater(f"SMTP: {type(error).__name__}") from None
        return str(message["Message-ID"])
