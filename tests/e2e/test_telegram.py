"""The Telegram channel end to end: real updates through the real aiogram Dispatcher, the
Bot API over HTTP on loopback, and the real database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.services.surveys import Event, OptedOut, Outcome, SurveyService, Who
from conversations.engine import Reply
from handlers.telegram import app as telegram
from storage.models import (
    CustomerRow,
    DeliveryRow,
    DeliveryStatus,
    DialogueRow,
    IdentityRow,
)
from testkit.botapi import BotApiStub, close_bot, iter_buttons
from tests.e2e.telegram_support import (
    ADMIN_CHAT,
    WEBHOOK_SECRET,
    Product,
    in_webhook_mode,
    running,
    webhook,
)

ANNA = 1001
BOB = 1002
NPS_QUESTION = "How likely are you to recommend us to a friend or colleague, 0-10?"


@pytest.fixture
async def api() -> AsyncIterator[BotApiStub]:
    async with BotApiStub() as stub:
        yield stub


@pytest.fixture
async def product(db_url: str, api: BotApiStub) -> AsyncIterator[Product]:
    async with running(db_url, api) as started:
        yield started


def buttons(message: dict[str, object]) -> list[str]:
    return [button["text"] for button in iter_buttons(message)]


async def test_a_whole_nps_survey(product: Product, api: BotApiStub) -> None:
    await product.send(ANNA, "/start")

    [question] = api.sent(ANNA)
    assert question["text"].startswith(NPS_QUESTION)
    rows = question["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in rows] == [
        ["0", "1", "2", "3", "4", "5"], ["6", "7", "8", "9", "10"]]

    tap = await product.tap(ANNA, "9")

    [answered] = api.calls_of("answerCallbackQuery")
    assert answered.params["callback_query_id"] == tap["callback_query"]["id"]
    shown = api.message(ANNA, api.messages(ANNA)[0]["message_id"])
    assert shown["text"].endswith("Your answer: 9")
    assert not buttons(shown)  # the keyboard is gone
    assert product.texts(ANNA)[1] == "What is the main reason for your score?"

    await product.send(ANNA, "Fast delivery & friendly support <3")

    assert product.texts(ANNA)[2] == "Thank you for your feedback!"
    assert await product.answers() == [
        ("score", 9, None, None), ("reason", None, None, "Fast delivery & friendly support <3")]
    assert api.errors == []  # every text was valid HTML, every callback answered once
    assert api.sent(ADMIN_CHAT) == []  # a promoter raises no alert


async def test_post_call_csat_low_score_branch_and_the_team_alert(
        db_url: str, api: BotApiStub) -> None:
    async with running(db_url, api, default_survey="post_call_csat") as product:
        await product.send(ANNA, "/start", language_code="ru")
        assert product.texts(ANNA)[0].startswith("Как вы оцениваете разговор с нашим")

        await product.tap(ANNA, "1")

        [alert] = api.sent(ADMIN_CHAT)
        assert "Low CSAT score: 1" in alert["text"]
        assert "Anna" in alert["text"]
        assert buttons(alert) == ["Reply", "Resolve", "Open conversation"]
        assert product.texts(ANNA)[1] == "Что пошло не так?"

        await product.tap(ANNA, "⬜ Долго ждал(а)")
        await product.tap(ANNA, "⬜ Невежливо")
        picked = api.messages(ANNA)[-1]
        assert buttons(picked)[:4] == ["☑️ Долго ждал(а)", "⬜ Вопрос не решён",
                                       "☑️ Невежливо", "⬜ Другое"]
        await product.tap(ANNA, "✅ Готово")

        assert api.message(ANNA, picked["message_id"])["text"].endswith(
            "Ваш ответ: Долго ждал(а), Невежливо")
        assert product.texts(ANNA)[2] == "Расскажите подробнее — мы разберёмся."

        await product.send(ANNA, "Ждала 40 минут", language_code="ru")

        assert product.texts(ANNA)[3].startswith("Простите, что так вышло.")
        comment = api.messages(ADMIN_CHAT)[1]
        assert comment["text"].endswith("\u2068Ждала 40 минут\u2069")  # isolated (bidi)
        assert comment["reply_to_message"]["message_id"] == api.messages(ADMIN_CHAT)[0][
            "message_id"]  # under the alert
        assert await product.answers() == [
            ("csat", 1, None, None), ("what_went_wrong", None, ["waiting", "rude"], None),
            ("details", None, None, "Ждала 40 минут")]

        # The team opens the conversation from the alert.
        await product.tap(ADMIN_CHAT, "Open conversation")
        transcript = api.sent(ADMIN_CHAT)[-1]["text"]
        assert "csat: 1" in transcript
        assert "what_went_wrong: waiting, rude" in transcript


async def test_a_reply_that_does_not_fit_is_asked_again(product: Product,
                                                        api: BotApiStub) -> None:
    await product.send(ANNA, "/start")
    await product.send(ANNA, "11")

    again = api.sent(ANNA)[1]
    assert again["text"].startswith("11 is not on the scale. Please send a number from 0 to 10.")
    assert NPS_QUESTION in again["text"]
    assert len(buttons(again)) == 11

    sticker = api.message_update(ANNA, "x")
    del sticker["message"]["text"]
    sticker["message"]["sticker"] = {"file_id": "s", "file_unique_id": "s", "type": "regular",
                                     "width": 512, "height": 512, "is_animated": False,
                                     "is_video": False}
    await product.feed(sticker)
    assert product.texts(ANNA)[2].startswith("I can only read text here.")

    await product.send(ANNA, "девять")
    assert await product.answers() == [("score", 9, None, None)]


async def test_stop_then_no_more_surveys_until_the_customer_asks(product: Product,
                                                                api: BotApiStub) -> None:
    await product.send(ANNA, "/start")
    await product.send(ANNA, "/stop")
    assert buttons(api.sent(ANNA)[-1]) == ["Yes, stop", "No, keep them"]

    await product.tap(ANNA, "Yes, stop")

    assert product.texts(ANNA)[-1].startswith("Done: you will not receive any more surveys")
    async with product.factory() as session:
        customer = await session.scalar(select(CustomerRow).join(IdentityRow).where(
            IdentityRow.channel == "telegram", IdentityRow.address == str(ANNA)))
        assert customer is not None
        assert customer.opted_out_at is not None
        dialogue = await session.scalar(select(DialogueRow))
        assert dialogue is not None
        assert dialogue.status == "abandoned"
    with pytest.raises(OptedOut):  # honoured by the service itself, for every channel
        await product.surveys.begin(Who("telegram", str(ANNA)), "nps")

    await product.send(ANNA, "9")
    assert product.texts(ANNA)[-1].startswith("There is no open survey right now")
    await product.send(ANNA, "/start")
    assert product.texts(ANNA)[-1] == "You asked us not to send you surveys."
    assert await product.answers() == []

    await product.tap(ANNA, "Receive surveys again")
    assert product.texts(ANNA)[-2] == "Welcome back! Surveys are on again."
    assert product.texts(ANNA)[-1].startswith(NPS_QUESTION)


async def test_language_switches_the_bot_and_the_open_question(product: Product,
                                                               api: BotApiStub) -> None:
    await product.send(ANNA, "/start")
    await product.send(ANNA, "/language")
    assert buttons(api.sent(ANNA)[-1]) == ["English", "Русский"]

    await product.tap(ANNA, "Русский")

    assert product.texts(ANNA)[-2] == "Язык: русский"
    assert product.texts(ANNA)[-1].startswith("Насколько вероятно, что вы порекомендуете")
    await product.send(ANNA, "/help")
    assert product.texts(ANNA)[-1].startswith("Я задаю несколько коротких вопросов")
    await product.tap(ANNA, "10")
    assert product.texts(ANNA)[-1] == "Почему вы поставили такую оценку?"


async def test_the_first_language_comes_from_telegram(product: Product) -> None:
    await product.send(ANNA, "/start", language_code="ru")
    assert product.texts(ANNA)[0].startswith("Насколько вероятно")
    await product.send(ANNA, "/help", language_code="ru")
    assert product.texts(ANNA)[1].startswith("Я задаю")


async def _delivery(product: Product, token: str, status: str = DeliveryStatus.SENT) -> int:
    now = datetime.now(UTC)
    async with product.factory() as session:
        customer = CustomerRow(external_id="crm-42", first_name="Ivan", attributes={},
                               created_at=now, updated_at=now)
        session.add(customer)
        await session.flush()
        delivery = DeliveryRow(customer_id=customer.id, survey_id="post_call_csat",
                               channel="telegram", due_at=now, status=status,
                               context={"agent_name": "Olga"}, token=token, created_at=now,
                               updated_at=now)
        session.add(delivery)
        await session.commit()
        return delivery.id


async def test_a_deep_link_binds_the_chat_to_its_customer_and_delivery(
        product: Product, api: BotApiStub) -> None:
    delivery_id = await _delivery(product, "AbC123xyz")

    await product.send(ANNA, "/start AbC123xyz", language_code="en")

    assert product.texts(ANNA)[0].startswith("How would you rate your call with Olga?")
    async with product.factory() as session:
        identity = await session.scalar(select(IdentityRow).filter_by(
            channel="telegram", address=str(ANNA)))
        customer = await session.scalar(select(CustomerRow).filter_by(external_id="crm-42"))
        dialogue = await session.scalar(select(DialogueRow))
    assert identity is not None
    assert customer is not None
    assert dialogue is not None
    assert identity.customer_id == customer.id
    assert (dialogue.customer_id, dialogue.delivery_id) == (customer.id, delivery_id)

    await product.send(ANNA + 1, "/start no-such-token")
    assert product.texts(ANNA + 1) == [
        "This survey link has expired or was already used. Thank you all the same!"]


async def test_a_plain_start_opens_the_pending_delivery(product: Product) -> None:
    delivery_id = await _delivery(product, "tok-pending")
    async with product.factory() as session:
        customer = await session.scalar(select(CustomerRow).filter_by(external_id="crm-42"))
        assert customer is not None
        session.add(IdentityRow(customer_id=customer.id, channel="telegram",
                                address=str(ANNA), created_at=datetime.now(UTC)))
        await session.commit()

    await product.send(ANNA, "/start", language_code="en")

    assert product.texts(ANNA)[0].startswith("How would you rate your call with Olga?")
    async with product.factory() as session:
        dialogue = await session.scalar(select(DialogueRow))
    assert dialogue is not None
    assert dialogue.delivery_id == delivery_id


async def test_the_same_update_twice_is_applied_once(product: Product, api: BotApiStub) -> None:
    await product.send(ANNA, "/start")
    tap = await product.tap(ANNA, "9")
    sent = len(api.sent(ANNA))

    # Telegram delivers it again: it never heard back, so the customer may never have seen
    # the next question (the first handling died after its commit): it is asked again.
    await product.feed(tap)
    assert len(api.sent(ANNA)) == sent + 1
    assert product.texts(ANNA)[-1] == product.texts(ANNA)[-2] == \
        "What is the main reason for your score?"
    text = await product.send(ANNA, "Because")
    await product.feed(text)  # and again: the dialogue has ended, nothing more to say

    assert await product.answers() == [("score", 9, None, None),
                                       ("reason", None, None, "Because")]
    assert len(api.sent(ANNA)) == sent + 2  # the question again, then the thanks, once
    assert not [e for e in api.errors if "query" not in e.description]


async def test_an_update_id_counts_per_bot(product: Product, api: BotApiStub) -> None:
    """update_id is numbered per bot: the same number from another bot on this database
    (a new BOT_TOKEN) is another update, not a redelivery."""
    update = await product.send(ANNA, "/start")
    other = telegram.build_bot(product.settings.model_copy(
        update={"bot_token": SecretStr("654321:OTHER-token")}),
        product.surveys.mark_unreachable)
    try:
        again = api.message_update(BOB, "/start")
        again["update_id"] = update["update_id"]
        await product.dispatcher.feed_raw_update(other, again)
    finally:
        await close_bot(other)
    assert product.texts(BOB) == [product.texts(ANNA)[0]]  # asked, not taken for a repeat


async def test_a_restart_mid_dialogue_continues_where_the_customer_was(
        db_url: str, api: BotApiStub) -> None:
    async with running(db_url, api) as first:
        await first.send(ANNA, "/start")
        await first.tap(ANNA, "4")
    async with running(db_url, api) as second:  # a new process: nothing kept in memory
        await second.send(ANNA, "Too slow")
        assert second.texts(ANNA)[-1] == "Thank you for your feedback!"
        assert await second.answers() == [("score", 4, None, None),
                                          ("reason", None, None, "Too slow")]


async def test_two_processes_behind_one_webhook_share_a_chat(db_url: str,
                                                             api: BotApiStub) -> None:
    async with running(db_url, api) as one, running(db_url, api) as other:
        await one.send(ANNA, "/start")
        tap = api.callback_update(ANNA, "q:1:1:a:6", api.messages(ANNA)[0]["message_id"])
        text = api.message_update(ANNA, "Price")
        await asyncio.gather(other.feed(tap), one.feed(text))
        answers = await one.answers()
        # The tap first: "Price" is the reason. The text first: it is no score, so it is
        # asked again, and then the tap is the score. Never both, never a lost tap.
        assert answers[0] == ("score", 6, None, None)
        assert answers[1:] in ([], [("reason", None, None, "Price")])


async def test_a_tap_on_an_old_or_foreign_keyboard_changes_nothing(product: Product,
                                                                   api: BotApiStub) -> None:
    await product.send(ANNA, "/start")
    question = api.messages(ANNA)[0]["message_id"]
    old = [b["callback_data"] for b in iter_buttons(api.messages(ANNA)[0])]
    await product.tap(ANNA, "3")
    await product.send(ANNA, "Meh")
    sent = len(api.sent(ANNA))

    await product.feed(api.callback_update(ANNA, old[10], question, check_button=False))
    await product.feed(api.callback_update(ANNA, "nps:9", question, check_button=False))

    toasts = [call.params.get("text") for call in api.calls_of("answerCallbackQuery")]
    assert toasts[-2:] == ["This survey is closed. Thank you!", "This button no longer works."]
    assert len(api.sent(ANNA)) == sent
    assert await product.answers() == [("score", 3, None, None), ("reason", None, None, "Meh")]


async def test_a_stale_button_in_an_open_dialogue_is_refused_politely(
        product: Product, api: BotApiStub) -> None:
    await product.send(ANNA, "/start")
    first = api.messages(ANNA)[0]["message_id"]
    await product.tap(ANNA, "8")
    await product.feed(api.callback_update(ANNA, "q:1:1:a:2", first, check_button=False))

    toast = api.calls_of("answerCallbackQuery")[-1].params.get("text")
    assert toast == "This question has already been answered."
    assert await product.answers() == [("score", 8, None, None)]


async def test_blocked_by_the_customer_marks_the_chat_unreachable(
        product: Product, api: BotApiStub) -> None:
    api.fail("sendMessage", status=403, chat_id=ANNA, times=None)

    await product.send(ANNA, "/start")

    async with product.factory() as session:
        identity = await session.scalar(select(IdentityRow))
    assert identity is not None
    assert (identity.reachable, identity.unreachable_reason) == (False, "blocked")
    assert len(api.calls_of("sendMessage")) == 1  # no apology sent into the void


async def test_too_many_requests_waits_and_sends(product: Product, api: BotApiStub) -> None:
    api.fail("sendMessage", status=429, retry_after=1, chat_id=ANNA)
    began = time.monotonic()

    await product.send(ANNA, "/start")

    assert time.monotonic() - began >= 1
    assert product.texts(ANNA)[0].startswith(NPS_QUESTION)


async def test_network_and_server_errors_are_retried(product: Product, api: BotApiStub) -> None:
    api.fail("sendMessage", status=500, chat_id=ANNA, times=2)
    await product.send(ANNA, "/start")
    assert product.texts(ANNA)[0].startswith(NPS_QUESTION)


class Broken(SurveyService):
    async def reply(self, who: Who, reply: Reply, *, event: Event | None = None
                    ) -> Outcome | None:
        raise RuntimeError(f"boom for {who.first_name} {reply.value}")


async def test_an_unexpected_error_gets_an_apology_and_a_log_without_personal_data(
        product: Product, api: BotApiStub, caplog: pytest.LogCaptureFixture) -> None:
    # The process's updates' dispatcher, over a survey service that fails.
    services = product.built.services
    broken = telegram.build_dispatcher(
        product.settings, telegram.build_i18n(), surveys=Broken(services.db),
        alerts=services.alerts, admin_service=services.admin,
        reports_service=services.reports, exports=services.exports)
    caplog.set_level(logging.INFO)
    await broken.feed_raw_update(product.bot, api.message_update(
        ANNA, "my phone is +7 999 123-45-67", first_name="Anastasia"))

    assert product.texts(ANNA) == [
        "Sorry, something went wrong on our side. Please try again in a minute."]
    logged = caplog.text  # as a handler would write it, tracebacks included
    assert "RuntimeError" in logged
    assert "test_telegram.py" in logged  # where it failed is there
    assert "Anastasia" not in logged
    assert "123-45-67" not in logged


async def test_the_webhook_checks_telegrams_secret_token(db_url: str, api: BotApiStub) -> None:
    async with in_webhook_mode(db_url, api) as product, webhook(product) as url:
        start = api.message_update(ANNA, "/start")
        assert await api.post_webhook(url, start, secret="wrong") == 401
        assert await api.post_webhook(url, start) == 401
        assert api.sent(ANNA) == []
        assert await api.post_webhook(url, start, secret=WEBHOOK_SECRET) == 200
        assert product.texts(ANNA)[0].startswith(NPS_QUESTION)


async def test_commands_are_registered_in_english_and_russian(product: Product,
                                                              api: BotApiStub) -> None:
    await telegram.set_commands(product.bot, product.i18n)

    menus = {call.params.get("language_code"): call.params["commands"]
             for call in api.calls_of("setMyCommands")}
    assert [c["command"] for c in menus[None]] == ["start", "language", "stop", "help"]
    assert menus[None][2]["description"] == "Stop receiving surveys"
    assert menus["ru"][2]["description"] == "Больше не получать опросы"
