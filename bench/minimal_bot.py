"""The baseline for the Telegram benchmark: the NPS bot a developer writes by hand in an
afternoon with aiogram 3, and that Otklik is compared against.

/start asks the 0-10 question with an inline keyboard; a tap answers the callback, turns the
question into "Your answer: N", stores the score and asks for the reason; the next text is the
reason, then "Thank you". The FSM state lives in aiogram's MemoryStorage. Each answer (the
score, then the reason) is its own row, INSERTed and committed at once on one aiosqlite
connection: no ORM, no unit of work, no rollups, no retries.

Serve it in webhook mode, as a load driver needs (POST updates, get 200 when handled):

    bot, dispatcher = build_minimal_bot(token, api_base, db_path)
    async with serve_webhook(bot, dispatcher) as url:
        ...  # POST updates to url
    await answers_committed(db_path)
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from aiohttp.typedefs import Handler

QUESTION = "How likely are you to recommend us to a friend? 0-10"
REASON = "What is the main reason for your score?"
THANKS = "Thank you for your feedback!"
KEYBOARD = InlineKeyboardMarkup(inline_keyboard=[
    [InlineKeyboardButton(text=str(score), callback_data=f"nps:{score}") for score in scores]
    for scores in (range(6), range(6, 11))
])
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    chat_id INTEGER NOT NULL,
    score INTEGER NOT NULL,
    reason TEXT,
    answered_at TEXT NOT NULL
)"""
INSERT = "INSERT INTO answers (chat_id, score, reason, answered_at) VALUES (?, ?, ?, ?)"
# The same durability as Otklik's SQLite (storage/db.py), so the comparison is of the code
# and not of fsync: WAL, and no fsync on every commit.
PRAGMAS = ("PRAGMA busy_timeout=5000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
DB = web.AppKey("db", aiosqlite.Connection)  # the connection of webhook_app's handler



class Survey(StatesGroup):
    reason = State()


async def on_start(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(QUESTION, reply_markup=KEYBOARD)


async def on_score(query: CallbackQuery, state: FSMContext, db: aiosqlite.Connection) -> None:
    digits = (query.data or "").removeprefix("nps:")
    await query.answer()
    if not isinstance(query.message, Message) or not digits.isdigit() or int(digits) > 10:
        return  # the message is too old to edit, or the data is not ours
    score = int(digits)
    await query.message.edit_text(f"Your answer: {score}")  # no reply_markup: keyboard gone
    await save(db, query.message.chat.id, score, None)
    await state.set_state(Survey.reason)
    await state.update_data(score=score)
    await query.message.answer(REASON)


async def on_reason(message: Message, state: FSMContext, db: aiosqlite.Connection) -> None:
    data = await state.get_data()
    await save(db, message.chat.id, int(data["score"]), message.text)
    await state.clear()
    await message.answer(THANKS)


def build_router() -> Router:
    # A new Router per bot: aiogram attaches a router to one dispatcher only.
    router = Router(name="minimal_nps")
    router.message.register(on_start, CommandStart())
    router.callback_query.register(on_score, F.data.startswith("nps:"))
    router.message.register(on_reason, Survey.reason, F.text)
    return router


async def save(db: aiosqlite.Connection, chat_id: int, score: int, reason: str | None) -> None:
    await db.execute(INSERT, (chat_id, score, reason, datetime.now(UTC).isoformat()))
    await db.commit()


async def open_db(db_path: Path, *schema: str) -> aiosqlite.Connection:
    """The minimal's one connection, with PRAGMAS, its tables made from `schema`."""
    db = await aiosqlite.connect(db_path)
    for statement in (*PRAGMAS, *schema):
        await db.execute(statement)
    await db.commit()
    return db


def webhook_app(path: str, receive: Handler, db_path: Path, *schema: str) -> web.Application:
    """The other minimals' app (bench/minimal_sms.py, bench/minimal_whatsapp.py): `receive`
    at POST `path`; the database opened into app[DB] on the app's startup (open_db), closed
    on its cleanup."""

    async def start(app: web.Application) -> None:
        app[DB] = await open_db(db_path, *schema)

    async def close(app: web.Application) -> None:
        await app[DB].close()

    app = web.Application()
    app.router.add_post(path, receive)
    app.on_startup.append(start)
    app.on_cleanup.append(close)
    return app


def build_minimal_bot(token: str, api_base: str, db_path: Path) -> tuple[Bot, Dispatcher]:
    """The bot talking to the Bot API at `api_base`, and its dispatcher. The database
    connection is opened on the dispatcher's startup and closed on its shutdown (both
    emitted by `serve_webhook`, or by `start_polling`)."""
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_base)))
    dispatcher = Dispatcher(storage=MemoryStorage())
    dispatcher.include_router(build_router())

    async def on_startup() -> None:
        dispatcher["db"] = await open_db(db_path, SCHEMA)

    async def on_shutdown() -> None:
        db: aiosqlite.Connection = dispatcher.workflow_data.pop("db")
        await db.close()

    dispatcher.startup.register(on_startup)
    dispatcher.shutdown.register(on_shutdown)
    return bot, dispatcher


def mount_webhook(app: web.Application, bot: Bot, dispatcher: Dispatcher, *,
                  path: str = "/webhook", secret_token: str | None = None) -> None:
    """Handle updates POSTed to `path` of `app`. The handler runs before the response
    (handle_in_background=False): a 200 means the update was handled."""
    SimpleRequestHandler(dispatcher, bot, handle_in_background=False,
                         secret_token=secret_token).register(app, path=path)
    setup_application(app, dispatcher, bot=bot)


@asynccontextmanager
async def serve_webhook(bot: Bot, dispatcher: Dispatcher, *, host: str = "127.0.0.1",
                        port: int = 0, path: str = "/webhook",
                        secret_token: str | None = None) -> AsyncIterator[str]:
    """Serve the bot's webhook on host:port (0: a free port), register it with setWebhook
    as a real deployment does, and yield its URL. On exit the server stops, the database is
    closed, and so is the bot's session (SimpleRequestHandler closes it on shutdown)."""
    app = web.Application()
    mount_webhook(app, bot, dispatcher, path=path, secret_token=secret_token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        await web.SockSite(runner, sock).start()
        url = f"http://{host}:{sock.getsockname()[1]}{path}"
        await bot.set_webhook(url, secret_token=secret_token)
        yield url
    finally:
        await runner.cleanup()


async def answers_committed(db_path: Path) -> int:
    """Answers committed so far, read on a connection of its own."""
    return await rows_committed(db_path, "answers")


async def rows_committed(db_path: Path, table: str) -> int:
    """The rows of a minimal bot's table committed so far, read on a connection of its
    own; none before the bot made the table."""
    async with aiosqlite.connect(db_path) as db:
        try:
            async with db.execute(f"SELECT count(*) FROM {table}") as cursor:
                row = await cursor.fetchone()
        except aiosqlite.OperationalError:  # no table: the bot never started
            return 0
    return int(row[0]) if row else 0
