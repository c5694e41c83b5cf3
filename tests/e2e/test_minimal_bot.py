"""The benchmark's hand-made baseline bot (bench/minimal_bot.py) served as a webhook, over
HTTP, against the loopback Bot API: one customer's whole survey."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from bench.minimal_bot import (
    QUESTION,
    REASON,
    THANKS,
    answers_committed,
    build_minimal_bot,
    serve_webhook,
)
from testkit.botapi import BotApiStub

TOKEN = "987654:MINIMAL-bench_bot"
SECRET = "bench-secret"
CHAT = 1001


async def test_start_tap_and_reason_make_three_messages_an_edit_and_two_rows(
        tmp_path: Path) -> None:
    db_path = tmp_path / "answers.db"
    async with BotApiStub() as api:
        bot, dispatcher = build_minimal_bot(TOKEN, api.base_url, db_path)
        async with serve_webhook(bot, dispatcher, secret_token=SECRET) as url:
            assert api.webhook_url == url
            assert await api.post_webhook(url, api.message_update(CHAT, "/start"), "wrong") == 401
            # handle_in_background=False: a 200 means the handler has run to its end.
            assert await api.post_webhook(url, api.message_update(CHAT, "/start"), SECRET) == 200
            [question] = api.messages(CHAT)
            tap = api.callback_update(CHAT, "nps:9", question["message_id"])
            assert await api.post_webhook(url, tap, SECRET) == 200
            reason = api.message_update(CHAT, "Fast delivery")
            assert await api.post_webhook(url, reason, SECRET) == 200
            assert await answers_committed(db_path) == 2

    assert [params["text"] for params in api.sent(CHAT)] == [QUESTION, REASON, THANKS]
    keyboard = api.sent(CHAT)[0]["reply_markup"]["inline_keyboard"]
    assert [[button["callback_data"] for button in row] for row in keyboard] == [
        [f"nps:{score}" for score in range(6)], [f"nps:{score}" for score in range(6, 11)]]
    [edit] = api.calls_of("editMessageText")
    assert edit.params["message_id"] == question["message_id"]
    assert edit.params["text"] == "Your answer: 9"
    assert "reply_markup" not in edit.params
    assert [call.params["callback_query_id"] for call in api.calls_of("answerCallbackQuery")] == [
        tap["callback_query"]["id"]]
    assert [(message["text"], "reply_markup" in message) for message in api.messages(CHAT)] == [
        ("Your answer: 9", False), (REASON, False), (THANKS, False)]
    assert not api.errors
    async with aiosqlite.connect(db_path) as db, db.execute(
            "SELECT chat_id, score, reason FROM answers ORDER BY id") as cursor:
        rows = await cursor.fetchall()
    assert [tuple(row) for row in rows] == [(CHAT, 9, None), (CHAT, 9, "Fast delivery")]
