"""Surveys sent unprompted (after a trigger, a campaign, a reminder): the dispatcher's
Sender for Telegram. Errors become the dispatcher's: 403 or no such chat closes the
channel, 429 and network or server errors are tried again later."""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.utils.i18n import I18n

from bot.services.dispatch import ChannelClosed, Job, TryLater
from handlers.render import telegram as render
from handlers.telegram.customer import markup_for, ui_locale


class TelegramSender:
    def __init__(self, bot: Bot, i18n: I18n) -> None:
        self._bot = bot
        self._i18n = i18n

    async def send(self, job: Job) -> str | None:
        chat_id = int(job.address)
        locale = ui_locale(job.locale)

        def _(text: str) -> str:
            return self._i18n.gettext(text, locale=locale)

        last = None
        try:
            if job.reminder:
                await self._bot.send_message(chat_id, _(
                    "A reminder: we would still love to hear from you."))
            for prompt in job.prompts:
                message = await self._bot.send_message(
                    chat_id, render.text(prompt),
                    reply_markup=markup_for(prompt, job.dialogue_id, _))
                last = message.message_id
        except TelegramForbiddenError:
            raise ChannelClosed("blocked") from None
        except TelegramRetryAfter as error:
            raise TryLater("Telegram: 429", error.retry_after) from None
        except (TelegramNetworkError, TelegramServerError) as error:
            raise TryLater(f"Telegram: {type(error).__name__}") from None
        except TelegramBadRequest as error:
            if "chat not found" in error.message.lower():
                raise ChannelClosed("no_chat") from None  # the customer never opened the bot
            raise
        return str(last) if last is not None else None
