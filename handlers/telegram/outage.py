"""Updates that meet an unavailable database wait for it instead of being lost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from bot.services.availability import patiently


class WaitForDatabase(BaseMiddleware):
    """An update whose handling failed because the database was out of reach is handled
    again once it is back, for up to `patience` seconds: with long polling Telegram has
    already forgotten it, so nobody else would. Safe to repeat: the failed unit of work
    rolled back, and an update applied already is known by its id (SurveyService)."""

    def __init__(self, patience: float = 30.0) -> None:
        self._patience = patience

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        what = f"update {event.update_id}" if isinstance(event, Update) else "an update"
        return await patiently(lambda: handler(event, data), what=what,
                               patience=self._patience)
