"""Telegram's sending limits, shared by everything that sends unprompted: about 30 messages
a second per bot, one a second per chat, and a pause for everyone after a 429. In this
process always; with REDIS_URL by every process too (bot.ratelimit.SharedPace)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Protocol

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiolimiter import AsyncLimiter

CHATS_KEPT = 10_000  # per-chat buckets kept; an evicted chat has been quiet for a while


def _limiter(rate: float) -> AsyncLimiter:
    """`rate` per second, with a burst of at most one second's worth (and at least one)."""
    burst = max(1.0, rate)
    return AsyncLimiter(burst, burst / rate)


class Pace(Protocol):
    async def acquire(self, address: str) -> None: ...

    async def pause(self, seconds: float) -> None: ...


class Limiter:
    def __init__(self, rate: float, per_chat: float, shared: Pace | None = None) -> None:
        self._shared = shared
        self._all = _limiter(rate)
        self._per_chat = per_chat
        self._chats: OrderedDict[int, AsyncLimiter] = OrderedDict()
        self._paused_until = 0.0

    async def acquire(self, chat_id: int) -> None:
        chat = self._chats.pop(chat_id, None) or _limiter(self._per_chat)
        self._chats[chat_id] = chat
        if len(self._chats) > CHATS_KEPT:
            self._chats.popitem(last=False)
        await chat.acquire()
        await self._all.acquire()
        if self._shared is not None:  # then the other processes' share of the same pace
            await self._shared.acquire(str(chat_id))
        # Last: a 429 that came while we waited for a slot holds this message back too, and
        # another may extend the pause while we sleep.
        while (wait := self._paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    async def pause(self, seconds: float) -> None:
        """Telegram said 429: nobody sends for `seconds`, in any process sharing the pace."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        if self._shared is not None:
            await self._shared.pause(seconds)


class RateLimited(BaseRequestMiddleware):
    """A Bot API request middleware: messages wait for the limiter; a 429 pauses it."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        chat_id = getattr(method, "chat_id", None)
        if isinstance(chat_id, int) and type(method).__name__.startswith("Send"):
            await self._limiter.acquire(chat_id)
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter as error:
            await self._limiter.pause(error.retry_after)
            raise
