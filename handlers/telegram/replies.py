"""The team's replies to a customer who answered in Telegram: sent as the bot."""

from __future__ import annotations

from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError

from bot.services.alerts import SendFailed, Target, Unreachable


class TelegramReplier:
    def __init__(self, bot: Bot) -> None:
        self._bot = bot

    async def reply(self, target: Target, text: str) -> None:
        try:
            # Escaped: the bot speaks HTML, and an admin's "<" is just a character.
            await self._bot.send_message(int(target.address), escape(text, quote=False))
        except TelegramForbiddenError:
            raise Unreachable("no channel reaches this customer: they blocked the bot"
                              ) from None
        except TelegramAPIError as error:
            raise SendFailed(f"Telegram refused the message: {type(error).__name__}") from None
