from __future__ import annotations

import logging

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery

log = logging.getLogger(__name__)


async def answer(query: CallbackQuery, text: str | None = None) -> None:
    """Stop the tap's spinner. Telegram refuses a second answer and any after 15 s; the
    tap is still applied, so that refusal is no reason to fail the update."""
    try:
        await query.answer(text)
    except TelegramBadRequest as error:
        log.info("could not answer a tap: %s", error.message)
