"""Telegram's sending pace kept by two processes at once through Redis (bot.ratelimit
SharedPace behind bot.limits.Limiter): together they never send more than the pace allows
in any second, and a 429 one of them gets holds the other back too."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from limits.aio.storage import RedisStorage

from bot.limits import Limiter
from bot.ratelimit import SharedPace

REDIS = "redis://127.0.0.1:6379/8"  # a database of its own, emptied by each test here


@pytest.fixture
async def redis() -> str:
    storage = RedisStorage(f"async+{REDIS}")
    if not await storage.check() and not os.environ.get("CI"):  # CI fails instead
        pytest.skip(f"no Redis answers at {REDIS}")
    await storage.reset()
    return REDIS


def processes(redis: str, rate: float, per_chat: float) -> tuple[Limiter, Limiter]:
    """Two processes' limiters: each alone would allow `rate` a second."""
    return (Limiter(rate, per_chat, SharedPace(redis, "telegram", rate, per_chat)),
            Limiter(rate, per_chat, SharedPace(redis, "telegram", rate, per_chat)))


async def test_two_processes_keep_one_pace_between_them(redis: str) -> None:
    first, second = processes(redis, rate=5, per_chat=100)
    sent: list[float] = []

    async def send(limiter: Limiter, chat: int) -> None:
        await limiter.acquire(chat)
        sent.append(time.monotonic())

    await asyncio.gather(*(send(limiter, chat) for chat in range(8)
                           for limiter in (first, second)))
    sent.sort()
    # 16 sends at 5 a second in all: no second holds more than 5 of them (each process
    # alone would have let 5 through in its own second, 10 together); a few milliseconds
    # off for the clocks the window is kept by.
    assert max(sum(1 for at in sent if start <= at < start + 0.95) for start in sent) <= 5
    assert sent[-1] - sent[0] >= 2.0


async def test_a_chat_gets_one_message_a_second_whichever_process_sends(redis: str) -> None:
    first, second = processes(redis, rate=100, per_chat=1)
    began = time.monotonic()
    for limiter in (first, second, first):
        await limiter.acquire(4242)
    assert time.monotonic() - began >= 1.9  # three to one chat: two seconds at least
    await second.acquire(777)  # another chat is not held back by it


async def test_a_pause_one_process_was_told_holds_the_other(redis: str) -> None:
    first, second = processes(redis, rate=100, per_chat=100)
    await first.pause(2)  # Telegram answered the first process 429, retry_after 2
    began = time.monotonic()
    await second.acquire(4242)
    assert time.monotonic() - began >= 1.0  # Redis counts a pause in whole seconds
