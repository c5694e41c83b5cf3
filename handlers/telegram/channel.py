"""Telegram as a channel (bot.services.channels): what it is, and the sending of surveys
unprompted (after a trigger, a campaign, a reminder). Errors become the contract's: 403
or no such chat closes the channel, 429 (with its retry_after) and network or server
errors are tried again later, a message Telegram refuses for its content is undeliverable.

Inbound: updates by long polling or by the webhook (app.py), verified by Telegram's
secret-token header (a wrong one spends the failed-attempts budget: CREDENTIALS),
claimed once by update_id (SurveyService), /start's payload the deep link's token
(customer.py). Prompts become inline keyboards (render.py): scales up to 11 options in
one message, any number of choices one per row; a typed answer always works."""

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

from bot.keys import SETTINGS
from bot.services.channels import (
    AddressKind,
    Caps,
    ChannelClosed,
    Job,
    Spec,
    TryLater,
    Undeliverable,
)
from bot.signing import same_secret
from handlers.api.throttle import Presented
from handlers.channels import Plugin
from handlers.telegram import render
from handlers.telegram.customer import markup_for, ui_locale

# An inline keyboard holds up to 100 buttons, and callback data 64 bytes: a question's
# buttons carry indexes (render.QuestionTap), so no script reaches either.
SPEC = Spec("telegram", AddressKind.CHAT_ID, pushes=True, inbound=True, receipts=False,
            opt_out=frozenset({"/stop"}), caps=Caps(buttons=100))
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header's name)


def _secret(given: Presented) -> bool:
    """Whether the webhook's secret-token header is ours."""
    secret = given.request.app[SETTINGS].webhook_secret
    return secret is not None and same_secret(given.request.headers[SECRET_HEADER],
                                              secret.get_secret_value())


PLUGIN = Plugin(SPEC, lambda settings: settings.bot_token is not None,
                {SECRET_HEADER: _secret})


class TelegramChannel:
    spec = SPEC

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
            # Our message, not the address: sent again it would be refused again.
            raise Undeliverable(f"Telegram: {error.message[:200]}") from None
        return str(last) if last is not None else None
