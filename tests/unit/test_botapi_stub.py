"""The loopback Bot API (testkit/botapi.py) driven by a real aiogram Bot over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import SendMessage
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from aiohttp.test_utils import TestServer

from testkit.botapi import BotApiStub, LoopbackSession

TOKEN = "123456:TEST-token_abc"
CHAT = 42


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=item, callback_data=item) for item in data]])


def bot_on(api: BotApiStub, timeout: float = 5.0) -> Bot:
    return Bot(TOKEN, session=LoopbackSession(api=TelegramAPIServer.from_base(api.base_url),
                                              timeout=timeout))


@pytest.fixture
async def api() -> AsyncIterator[BotApiStub]:
    async with BotApiStub() as stub:
        yield stub


@pytest.fixture
async def bot(api: BotApiStub) -> AsyncIterator[Bot]:
    bot = bot_on(api)
    yield bot
    await bot.session.close()


async def test_get_me_is_the_bot_named_by_the_token(bot: Bot) -> None:
    me = await bot.get_me()

    assert (me.id, me.is_bot, me.username) == (123456, True, "otklik_test_bot")


async def test_send_message_returns_a_full_message_and_records_the_keyboard(
        api: BotApiStub, bot: Bot) -> None:
    first = await bot.send_message(CHAT, "Hi <b>there</b> &amp; welcome", parse_mode="HTML",
                                   reply_markup=keyboard("nps:0", "nps:1"))
    second = await bot.send_message(CHAT, "Second")
    elsewhere = await bot.send_message(7, "Other chat")

    assert (first.message_id, second.message_id, elsewhere.message_id) == (1, 2, 1)
    assert first.text == "Hi there & welcome"  # what the user sees
    assert first.chat.id == CHAT
    assert first.chat.type == "private"
    assert first.from_user is not None
    assert first.from_user.id == 123456
    assert first.reply_markup is not None
    assert first.reply_markup.model_dump() == keyboard("nps:0", "nps:1").model_dump()
    assert second.reply_markup is None
    sent = api.sent(CHAT)
    assert [params["text"] for params in sent] == ["Hi <b>there</b> &amp; welcome", "Second"]
    assert sent[0]["chat_id"] == CHAT
    assert sent[0]["parse_mode"] == "HTML"
    assert sent[0]["reply_markup"] == {"inline_keyboard": [
        [{"text": "nps:0", "callback_data": "nps:0"}, {"text": "nps:1", "callback_data": "nps:1"}]]}
    assert not api.errors


async def test_edit_replaces_text_and_drops_the_keyboard_like_telegram(
        api: BotApiStub, bot: Bot) -> None:
    question = await bot.send_message(CHAT, "Score?", reply_markup=keyboard("nps:9"))

    edited = await bot.edit_message_text("Your answer: 9", chat_id=CHAT,
                                         message_id=question.message_id)

    assert isinstance(edited, Message)
    assert (edited.text, edited.reply_markup) == ("Your answer: 9", None)
    assert edited.edit_date is not None
    stored = api.messages(CHAT)
    assert [(message["text"], "reply_markup" in message) for message in stored] == [
        ("Your answer: 9", False)]
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Your answer: 9", chat_id=CHAT, message_id=question.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("Nope", chat_id=CHAT, message_id=99)
    markup = await bot.edit_message_reply_markup(chat_id=CHAT, message_id=question.message_id,
                                                 reply_markup=keyboard("again"))
    assert isinstance(markup, Message)
    assert markup.reply_markup is not None
    assert markup.reply_markup.model_dump() == keyboard("again").model_dump()
    assert [error.description.split(":")[1].strip() for error in api.errors] == [
        "message is not modified", "message to edit not found"]


async def test_a_callback_query_is_answered_once(api: BotApiStub, bot: Bot) -> None:
    question = await bot.send_message(CHAT, "Score?", reply_markup=keyboard("nps:8", "nps:9"))
    update = api.callback_update(CHAT, "nps:9", question.message_id)
    query = update["callback_query"]
    assert query["message"]["reply_markup"]["inline_keyboard"][0][1]["callback_data"] == "nps:9"
    assert query["from"]["id"] == CHAT
    assert query["chat_instance"]

    assert await bot.answer_callback_query(query["id"]) is True
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query(query["id"])

    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=question.message_id)
    with pytest.raises(AssertionError, match="has no button 'nps:9'"):
        api.callback_update(CHAT, "nps:9", question.message_id)  # the keyboard is gone


async def test_injected_403_is_a_forbidden_error_for_that_chat_only(
        api: BotApiStub, bot: Bot) -> None:
    api.fail("sendMessage", chat_id=CHAT, status=403)

    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(CHAT, "Hello")
    await bot.send_message(CHAT + 1, "Hello")
    await bot.send_message(CHAT, "Hello again")  # times=1: the next one goes through

    assert [params["text"] for params in api.sent(CHAT)] == ["Hello again"]
    assert [(error.status, error.injected) for error in api.errors] == [(403, True)]
    assert [call.ok for call in api.calls_of("sendmessage")] == [False, True, True]


async def test_injected_429_carries_retry_after_and_500_is_a_server_error(bot: Bot,
                                                                          api: BotApiStub) -> None:
    api.fail("sendMessage", status=429, retry_after=3)
    api.fail("*", status=500, times=None)

    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(CHAT, "Hello")
    assert retry.value.retry_after == 3
    assert "Too Many Requests: retry after 3" in str(retry.value)
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    api.clear_faults()
    assert (await bot.get_me()).id == 123456


async def test_get_updates_long_polls_until_an_update_is_pushed(api: BotApiStub, bot: Bot) -> None:
    began = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    assert not poll.done()

    await api.push_update(api.message_update(CHAT, "/start", first_name="Ivan"))
    updates = await poll

    assert time.monotonic() - began < 1
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None
    assert message.text == "/start"
    assert message.from_user is not None
    assert message.from_user.first_name == "Ivan"
    assert message.entities is not None
    assert message.entities[0].type == "bot_command"
    # Not confirmed yet: sent again; a later offset confirms it.
    assert [update.update_id for update in await bot.get_updates()] == [updates[0].update_id]
    assert await bot.get_updates(offset=updates[0].update_id + 1) == []
    assert await bot.get_updates() == []


async def test_get_updates_times_out_empty_and_conflicts_with_a_webhook(
        api: BotApiStub, bot: Bot) -> None:
    began = time.monotonic()
    url = f"{api.base_url}/bot{TOKEN}/getUpdates?timeout=0.2"  # aiogram sends whole seconds
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert await response.json() == {"ok": True, "result": []}
    assert 0.2 <= time.monotonic() - began < 0.5

    await bot.set_webhook("https://example.com/telegram", secret_token="s3cret")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    info = await bot.get_webhook_info()
    assert info.url == "https://example.com/telegram"
    await bot.delete_webhook()
    assert await bot.get_updates() == []


async def test_what_telegram_rejects_is_rejected(api: BotApiStub, bot: Bot) -> None:
    fits = "é" * 32  # 64 bytes of UTF-8
    await bot.send_message(CHAT, "ok", reply_markup=keyboard(fits))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "too long data", reply_markup=keyboard(fits + "a"))
    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed"):
        await bot.send_message(CHAT, "no action", reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="tap me")]]))
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(CHAT, "")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    await bot.send_message(CHAT, "x" * 4096)
    with pytest.raises(TelegramBadRequest, match="can't parse entities: unescaped '<'"):
        await bot.send_message(CHAT, "Score < 7?", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "div"'):
        await bot.send_message(CHAT, "<div>x</div>", parse_mode="HTML")
    await bot.send_message(CHAT, "Score < 7?")  # no parse_mode: plain text

    assert len(api.sent(CHAT)) == 3
    assert len(api.errors) == 6
    assert not any(error.injected for error in api.errors)


async def test_a_delayed_response_times_out_the_client_but_the_message_was_sent(
        api: BotApiStub) -> None:
    api.delay("sendMessage", 5.0)
    impatient = bot_on(api, timeout=0.2)
    try:
        with pytest.raises(TelegramNetworkError, match="Request timeout"):
            await impatient.send_message(CHAT, "Slow")
        await impatient.send_message(CHAT, "Fast")
    finally:
        await impatient.session.close()

    assert [params["text"] for params in api.sent(CHAT)] == ["Slow", "Fast"]


async def test_a_dropped_call_is_a_network_error_and_does_nothing(api: BotApiStub,
                                                                  bot: Bot) -> None:
    api.drop("sendMessage", chat_id=CHAT)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "Lost")
    await bot.send_message(CHAT, "Sent")

    assert [params["text"] for params in api.sent(CHAT)] == ["Sent"]
    assert [call.error for call in api.calls_of("sendMessage")] == ["dropped", None]


async def test_wait_sent_waits_and_explains_a_timeout(api: BotApiStub, bot: Bot) -> None:
    async def later() -> None:
        await asyncio.sleep(0.02)
        await bot.send_message(CHAT, "One")

    task = asyncio.create_task(later())
    assert [params["text"] for params in await api.wait_sent(CHAT, 1)] == ["One"]
    await task
    with pytest.raises(AssertionError, match=r"2 message\(s\) to chat 42") as timeout:
        await api.wait_sent(CHAT, 2, timeout=0.05)
    assert "<- sendMessage chat_id=42 'One'" in str(timeout.value)


async def test_json_urlencoded_and_get_bodies_and_unknown_methods(api: BotApiStub) -> None:
    url = f"{api.base_url}/bot{TOKEN}"
    markup = {"inline_keyboard": [[{"text": "Site", "url": "https://example.com"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/sendMessage", json={
                "chat_id": CHAT, "text": "json", "reply_markup": markup}) as response:
            body: dict[str, Any] = await response.json()
            assert body["ok"]
            assert body["result"]["reply_markup"] == markup
        async with http.post(f"{url}/sendMessage", data={"chat_id": str(CHAT), "text": "form"}):
            pass
        async with http.get(f"{url}/getMe") as response:
            assert (await response.json())["result"]["id"] == 123456
        async with http.post(f"{url}/sendSticker", data={"chat_id": "1"}) as response:
            assert response.status == 404
    assert [params["text"] for params in api.sent(CHAT)] == ["json", "form"]


async def test_a_method_in_the_webhook_reply_is_executed(api: BotApiStub, bot: Bot) -> None:
    router = Router()

    @router.message()
    async def on_message(message: Message) -> SendMessage:
        return message.answer(f"echo: {message.text}")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, handle_in_background=False,
                         secret_token="s3cret").register(app, path="/hook")
    async with TestServer(app) as server:
        url = str(server.make_url("/hook"))
        assert await api.post_webhook(url, api.message_update(CHAT, "hi"), "wrong") == 401
        assert await api.post_webhook(url, api.message_update(CHAT, "hi"), "s3cret") == 200

    assert [params["text"] for params in api.sent(CHAT)] == ["echo: hi"]


async def test_unknown_messages_and_edits_are_errors(api: BotApiStub, bot: Bot) -> None:
    with pytest.raises(LookupError, match="has no message 5"):
        api.callback_update(CHAT, "x", 5)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, 5)
    with pytest.raises(TelegramNotFound):
        await bot.get_chat(CHAT)  # not served by the stub
    update = api.message_update(CHAT, "mine")
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("yours", chat_id=CHAT,
                                    message_id=update["message"]["message_id"])


async def test_a_second_poller_ends_the_first_with_a_conflict(api: BotApiStub, bot: Bot) -> None:
    other = bot_on(api)
    try:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.05)
        assert await other.get_updates() == []
        with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
            await first
    finally:
        await other.session.close()
