"""handlers.telegram.app.Resilient: what it retries, how long it waits, and what it gives up on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import Response, SendMessage

from handlers.telegram.app import Resilient

METHOD = SendMessage(chat_id=42, text="hi")
BOT = Bot("123:abc")


class Script:
    """make_request that fails with the given errors, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, bot: Bot, method: Any) -> Response[Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return Response[Any](ok=True, result=True)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return slept


def blocked(**options: Any) -> tuple[Resilient, list[int]]:
    chats: list[int] = []

    async def on_blocked(chat_id: int) -> None:
        chats.append(chat_id)

    return Resilient(on_blocked, **{"attempts": 4, "backoff": 0.5, **options}), chats


@pytest.mark.parametrize(("errors", "waits"), [
    ([TelegramRetryAfter(METHOD, "Too Many Requests", retry_after=3)], [3]),
    ([TelegramNetworkError(METHOD, "timeout"), TelegramServerError(METHOD, "Bad Gateway")],
     [0.5, 1.0]),
    ([TelegramNetworkError(METHOD, "reset")] * 3, [0.5, 1.0, 2.0]),
])
async def test_retried_until_it_goes_through(errors: list[Exception], waits: list[float],
                                             sleeps: list[float]) -> None:
    middleware, _ = blocked()
    request = Script(*errors)
    response = await middleware(request, BOT, METHOD)
    assert response.result is True
    assert (request.calls, sleeps) == (len(errors) + 1, waits)


@pytest.mark.parametrize("error", [
    TelegramNetworkError(METHOD, "down"),
    TelegramRetryAfter(METHOD, "Too Many Requests", retry_after=1),
])
async def test_gives_up_after_the_last_attempt(error: Exception, sleeps: list[float]) -> None:
    middleware, _ = blocked()
    request = Script(*[error] * 4)
    with pytest.raises(type(error)):
        await middleware(request, BOT, METHOD)
    assert request.calls == 4


async def test_without_a_limit_of_attempts_it_tries_for_its_patience(
        sleeps: list[float]) -> None:
    middleware, _ = blocked(attempts=None, patience=60)
    request = Script(*[TelegramServerError(METHOD, "Bad Gateway")] * 7)
    response = await middleware(request, BOT, METHOD)
    assert response.result is True
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]  # doubling, at most 5 s apart


async def test_a_wait_past_its_patience_is_not_slept(sleeps: list[float]) -> None:
    middleware, _ = blocked(patience=2)
    with pytest.raises(TelegramRetryAfter):
        await middleware(Script(TelegramRetryAfter(METHOD, "flood", retry_after=3)), BOT,
                         METHOD)
    assert sleeps == []


async def test_a_wait_longer_than_a_minute_is_not_slept(sleeps: list[float]) -> None:
    middleware, _ = blocked()
    with pytest.raises(TelegramRetryAfter):
        await middleware(Script(TelegramRetryAfter(METHOD, "flood", retry_after=3600)), BOT,
                         METHOD)
    assert sleeps == []


async def test_blocked_marks_the_chat_and_is_not_retried(sleeps: list[float]) -> None:
    middleware, chats = blocked()
    request = Script(TelegramForbiddenError(METHOD, "Forbidden: bot was blocked by the user"))
    with pytest.raises(TelegramForbiddenError):
        await middleware(request, BOT, METHOD)
    assert (request.calls, chats, sleeps) == (1, [42], [])


async def test_a_bad_request_is_not_retried(sleeps: list[float]) -> None:
    middleware, chats = blocked()
    request = Script(TelegramBadRequest(METHOD, "message text is empty"))
    with pytest.raises(TelegramBadRequest):
        await middleware(request, BOT, METHOD)
    assert (request.calls, chats) == (1, [])
