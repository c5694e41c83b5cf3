"""The team's replies to a customer (AlertService's Replier): in Telegram as the bot, by
e-mail as a reply through SMTP_URL. A channel this process has no sender for is
NotConfigured."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from html import escape

import aiosmtplib
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError

from bot.services.alerts import NotConfigured, SendFailed, Unreachable
from handlers.email.outbound import Smtp


class ChannelReplier:
    def __init__(self, bot: Bot | None, smtp: Smtp | None, sender: str, *,
                 timeout: float = 30) -> None:
        self._bot = bot
        self._smtp = smtp
        self._sender = sender
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        self._timeout = timeout

    async def telegram(self, chat_id: int, text: str) -> None:
        if self._bot is None:
            raise NotConfigured("Telegram is off in this process: BOT_TOKEN is not set")
        try:
            # Escaped: the bot speaks HTML, and an admin's "<" is just a character.
            await self._bot.send_message(chat_id, escape(text, quote=False))
        except TelegramForbiddenError:
            raise Unreachable("no channel reaches this customer: they blocked the bot"
                              ) from None
        except TelegramAPIError as error:
            raise SendFailed(f"Telegram refused the message: {type(error).__name__}") from None

    async def email(self, to: str, subject: str, text: str, *,
                    in_reply_to: str | None = None) -> None:
        if self._smtp is None:
            raise NotConfigured("e-mail is off in this process: SMTP_URL is not set")
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid("otklik.reply", domain=self._domain)
        if in_reply_to:  # threads under the survey's invitation in the customer's mailbox
            message["In-Reply-To"] = message["References"] = in_reply_to
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
