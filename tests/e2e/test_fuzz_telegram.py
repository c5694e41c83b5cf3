"""Malformed and hostile Telegram updates through the real aiogram Dispatcher the product
builds, on SQLite and PostgreSQL: messages without a sender or a text, huge and odd texts,
stickers, contacts, edited messages, groups and channels, taps with garbage data, ids at
the ends of int64. Whatever comes, no handler fails (the product logs a failure at ERROR
and apologises: no record at ERROR is the property) and garbage stores no answer. And the
webhook answers a body that is not an update with a 400 that quotes nothing of it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.models import AnswerRow
from testkit.botapi import BotApiStub, iter_buttons
from tests.e2e.fuzz_support import BACKENDS, Background, world_in_thread
from tests.e2e.telegram_support import ADMIN_CHAT, running
from tests.e2e.test_alerts import CHAT, Loop

JSON = dict[str, Any]
INT64 = st.integers(-(2**63), 2**63 - 1)
OPEN = 5151  # a customer whose dialogue is open: the fuzz starts in the middle of it
# The customer who answered, the one answering, the team chat, and anyone at all.
CHAT_IDS = st.one_of(st.sampled_from([CHAT, OPEN, OPEN, ADMIN_CHAT]), INT64)
TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "4\x00", "\u202e\u2066", "👍🏽‍🔥", "\u0301" * 50, "ℕ²³", " ",
                     "\n\t", "<b>x</b>", "&lt;", "alert #99999999999999999999999", "5",
                     " 2 ", "0", "-1", "1e3", "٣", "9" * 5000, "да", "no"]),
    st.builds(str.__mul__, st.sampled_from(["ж", "😀", "a"]), st.integers(4000, 20_000)))
COMMANDS = st.sampled_from(["/start", "/help", "/stop", "/language", "/report", "/alerts",
                            "/export", "/unknown", "/start@otklik_bot"])
# A question's button is q:SESSION:POSITION:ACTION[:VALUE]: near-misses of real ones too.
QUESTION_TAPS = st.builds(
    "q:{}:{}:{}{}".format, st.one_of(st.integers(-1, 4), INT64), st.integers(-1, 12),
    st.sampled_from(["a", "t", "d", "s", "b", "x", ""]),
    st.one_of(st.just(""), st.integers(-1, 12).map(":{}".format),
              st.text("0123456789abcdefxg", max_size=40).map(":{}".format)))
CALLBACK_DATA = st.one_of(
    QUESTION_TAPS,
    st.text(max_size=80),  # Telegram stops at 64 bytes; a forger need not
    st.builds("{}{}".format, st.sampled_from(["q:", "adm:conv:", "adm:res:", "adm:reply:",
                                              "stop:", "lang:", "resume", "x:"]),
              st.one_of(st.text(max_size=30), st.from_regex(r"-?\d{1,30}(:\w{0,3}){0,4}",
                                                            fullmatch=True))))
USER = st.fixed_dictionaries(
    {"id": INT64, "is_bot": st.booleans(), "first_name": st.text(max_size=70)},
    optional={"language_code": st.sampled_from(["en", "ru", "ru-RU", "zz", "", "x" * 40]),
              "username": st.text(max_size=40), "last_name": st.text(max_size=70)})
CHAT_OF = st.builds(lambda id_, kind: {"id": id_, "type": kind, "title": "t"},
                    CHAT_IDS, st.sampled_from(["private"] * 4 + ["group", "supergroup",
                                                                 "channel"]))
CONTENT = st.one_of(
    TEXTS.map(lambda text: {"text": text}),
    st.tuples(COMMANDS, st.text(max_size=70)).map(lambda c: _command(*c)),
    st.just({"sticker": {"file_id": "s", "file_unique_id": "s", "type": "regular",
                         "width": 1, "height": 1, "is_animated": False, "is_video": False}}),
    st.builds(lambda phone, user: {"contact": {"phone_number": phone, "first_name": "A",
                                               "user_id": user}},
              st.text(max_size=20), INT64),
    st.just({"photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]}),
    st.just({}),  # a service message with nothing we know
)


def _command(command: str, args: str) -> JSON:
    text = f"{command} {args}" if args else command
    return {"text": text, "entities": [{"type": "bot_command", "offset": 0,
                                        "length": len(command.encode("utf-16-le")) // 2}]}


@st.composite
def messages(draw: st.DrawFn) -> JSON:
    message: JSON = {"message_id": draw(st.integers(1, 2**31 - 1)), "date": 1772452800,
                     "chat": draw(CHAT_OF), **draw(CONTENT)}
    if draw(st.booleans()):  # channel posts and anonymous admins come without one
        message["from"] = draw(USER)
    if draw(st.booleans()):
        message["reply_to_message"] = {"message_id": 1, "date": 1772452800,
                                       "chat": message["chat"], "text": draw(TEXTS),
                                       "from": {"id": 123456, "is_bot": True,
                                                "first_name": "Otklik"}}
    return message


@st.composite
def taps(draw: st.DrawFn) -> JSON:
    query: JSON = {"id": str(draw(INT64)), "from": draw(USER), "chat_instance": "1",
                   "data": draw(CALLBACK_DATA)}
    shown = draw(st.sampled_from(["message", "message", "inaccessible", "none"]))
    if shown == "message":
        query["message"] = {**draw(messages()), "from": {"id": 123456, "is_bot": True,
                                                         "first_name": "Otklik"}}
    elif shown == "inaccessible":
        query["message"] = {"message_id": draw(st.integers(1, 2**31 - 1)), "date": 0,
                            "chat": draw(CHAT_OF)}
    return query


UPDATES = st.one_of(
    messages().map(lambda m: {"message": m}),
    messages().map(lambda m: {"edited_message": {**m, "edit_date": 1772452900}}),
    messages().map(lambda m: {"channel_post": {**m, "chat": {**m["chat"], "type": "channel"}}}),
    taps().map(lambda q: {"callback_query": q}),
)
ANY_UPDATE = st.builds(lambda update_id, update: {"update_id": update_id, **update},
                       st.integers(0, 2**63 - 1), UPDATES)


def near_misses(stub: BotApiStub) -> st.SearchStrategy[JSON]:
    """What the two customers with dialogues could send now: a tap on a button the bot
    shows them, as it is or altered, or a text; so the fuzz goes past the first question.
    The buttons are looked up as the update is built: what hypothesis draws must not
    depend on the product's state, only what is made of it."""
    def build(pick: int, cut: int, tail: str, text: str) -> JSON:
        shown = [(chat, message["message_id"], str(button["callback_data"]))
                 for chat in (CHAT, OPEN) for message in stub.messages(chat)[-2:]
                 for button in iter_buttons(message) if "callback_data" in button]
        if not shown or pick % 3 == 0:
            return stub.message_update((CHAT, OPEN)[pick % 2], text)
        chat, message_id, data = shown[pick % len(shown)]
        return stub.callback_update(chat, data[:len(data) - cut] + tail, message_id,
                                    check_button=False)

    return st.builds(build, st.integers(0, 2**16), st.sampled_from([0, 0, 0, 1, 2]),
                     st.one_of(st.just(""), st.text(max_size=4)), TEXTS)


def answers_no_one(update: JSON) -> bool:
    """What can never be an answer: anything but a text or a question's button, in a
    private chat (a customer with an open dialogue may answer with those)."""
    if query := update.get("callback_query"):
        return not str(query.get("data", "")).startswith("q:")
    message = update.get("message")
    return message is None or "text" not in message or message["chat"]["type"] != "private"


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """Records at ERROR from any logger (the product's on_error, aiogram.event, aiohttp)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Background, Loop]]:
    with world_in_thread(request.param, tmp_path_factory.mktemp("telegram")) as started:
        background, loop = started
        background.run(loop.customer.send(OPEN, "/start"))
        yield started


async def _answer_count(world: Loop) -> int:
    async with world.api.services.factory() as session:
        return int(await session.scalar(select(func.count(AnswerRow.id))) or 0)


@given(data=st.data())
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_no_update_fails_a_handler_or_stores_garbage(world: tuple[Background, Loop],
                                                      data: st.DataObject) -> None:
    background, loop = world
    for _ in range(data.draw(st.integers(1, 4))):
        update = data.draw(st.one_of(ANY_UPDATE, near_misses(loop.stub)))
        before = background.run(_answer_count(loop))
        with errors_logged() as errors:
            background.run(loop.customer.feed(update))
        assert [record.getMessage() for record in errors] == []
        if answers_no_one(update):
            assert background.run(_answer_count(loop)) == before


GARBAGE = [b"", b"{", b"\xff\xfe", b"null", b"[]", b"1", b'"update"', b"{}",
           b'{"update_id": "one"}', b'{"update_id": 1, "message": 5}',
           # A message without its chat: Telegram's bug, or a forger's, and no log of it.
           b'{"update_id": 1, "message": {"message_id": 1, "text": "+7 999 123-45-67"}}',
           b"[" * 100_000 + b"]" * 100_000]


async def test_the_webhook_answers_a_body_that_is_not_an_update_with_a_400(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with BotApiStub() as api, running(db_url, api, webhook_url="https://x.org/tg/hook",
                                            webhook_secret="s3cret") as product:
        app = product.built.web  # webhook_url is set: Telegram's route is on it
        async with TestServer(app) as server, ClientSession() as session:
            url = server.make_url("/tg/hook")
            for body in GARBAGE:
                async with session.post(url, data=body, headers={
                        "X-Telegram-Bot-Api-Secret-Token": "s3cret",
                        "Content-Type": "application/json"}) as response:
                    assert response.status == 400, body[:40]
                    assert "Traceback" not in await response.text()
            update = api.message_update(CHAT, "/start")
            assert await api.post_webhook(str(url), update, secret="s3cret") == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "999 123" not in caplog.text
