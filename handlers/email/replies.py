"""The team's replies to a customer reached by e-mail: a reply through SMTP_URL, threaded
under the survey's invitation."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import aiosmtplib

from bot.services.alerts import SendFailed, Target, Unreachable
from handlers.email.channel import Smtp


class EmailReplier:
    def __init__(self, smtp: Smtp, sender: str, *, timeout: float = 30) -> None:
        self._smtp = smtp
        self._sender = sender
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        self._timeout = timeout

    async def reply(self, target: Target, text: str) -> None:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = target.address
        message["Subject"] = target.subject
        message["Message-ID"] = make_msgid("otklik.reply", domain=self._domain)
        if target.in_reply_to:  # threads under the invitation in the customer's mailbox
            message["In-Reply-To"] = message["References"] = target.in_reply_to
        message.set_content(text)
        try:
            await self._smtp.send(message, seconds=self._timeout)
        except aiosmtplib.SMTPRecipientsRefused:
            raise Unreachable("no channel reaches this customer: the mail server refused "
                              "their address") from None
        except aiosmtplib.SMTPResponseException as error:
            raise SendFailed(f"SMTP: {error.code}") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise SendFailed(f"SMTP: {type(error).__name__}") from None
